"""The cluster's VM index in etcd (keys.VMS): for each VM name, the host it lives on and what
it holds there (vCPUs, memory, group). Placement writes an entry before the VM exists (its
reservation, scheduler.py); each member keeps the entries of its own VMs true (reconcile).

One key per VM, so names are unique in the cluster, and a reservation is one transaction
that fails if any entry changed since the scheduler read them (reserve).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ClusterError, ConflictError
from . import keys
from .etcd import Compare, Etcd, delete_op, put_op

HOLD = 300.0  # seconds a reservation waits for its VM before its host gives it back
SWEEP = 30.0  # seconds between a member's looks for such reservations

@dataclass(frozen=True)
class Entry:
    """Where a VM lives and what it holds there."""

    host: str
    cpus: int
    memory_mib: int
    image: str | None = None
    group: str | None = None
    why: dict[str, str] = field(default_factory=dict)  # host -> why chosen or not
    policy: str | None = None  # the group's rule: "spread" or "pack"
    placed: float = 0.0  # when placement reserved it (0: the host recorded a VM it has)

    def dump(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def read(raw: bytes) -> Entry:
    data: dict[str, Any] = json.loads(raw)
    return Entry(**data)


async def entries(etcd: Etcd) -> tuple[dict[str, Entry], int]:
    """Every entry by VM name, and the revision they were read at."""
    found, revision = await etcd.range_at(keys.VMS)
    return {k.removeprefix(keys.VMS): read(v) for k, v in found.items()}, revision


async def lookup(etcd: Etcd, name: str) -> Entry | None:
    raw = await etcd.get(keys.vm(name))
    return read(raw) if raw is not None else None


async def reserve(etcd: Etcd, name: str, entry: Entry, revision: int, new: bool = True
                  ) -> bool:
    """Write ``entry`` for VM ``name`` (``new``: one not in the cluster; else one moving) if
    no entry changed after ``revision`` (then the scheduler's view still holds); False if
    one did (choose again). A new VM's name already in the cluster is a ConflictError."""
    fresh = [Compare(keys.vm(name), "CREATE", 0)] if new else []
    done = await etcd.txn([Compare(keys.VMS, "MOD", revision + 1, "LESS", prefix=True),
                           *fresh], [put_op(keys.vm(name), entry.dump())])
    if not done and new and (other := await lookup(etcd, name)) is not None:
        raise ConflictError(f"a VM named {name} already exists in the cluster (on "
                            f"{other.host}): choose another name")
    return done


async def move(etcd: Etcd, name: str, host: str) -> None:
    """Point ``name``'s entry at ``host`` (it migrated there)."""
    raw = await etcd.get(keys.vm(name))
    entry = read(raw) if raw is not None else Entry(host, 1, 0)
    await etcd.put(keys.vm(name), Entry(**{**asdict(entry), "host": host}).dump())


async def release(etcd: Etcd, name: str, host: str) -> None:
    """Drop ``name``'s entry if it still points at ``host``."""
    raw = await etcd.get(keys.vm(name))
    if raw is not None and read(raw).host == host:
        await etcd.txn([Compare(keys.vm(name), "VALUE", raw)], [delete_op(keys.vm(name))])


class Keeper:
    """A member's side: its VMs' entries follow what it runs. A VM that appeared here gets an
    entry pointing here (unless one points elsewhere: it is arriving by migration, and the
    host it left drops that entry); one that went away loses its entry if it pointed here.
    A reservation for here whose VM never came (its run failed and nobody gave it back, or
    this host restarted) is given back after HOLD seconds."""

    def __init__(self, etcd: Etcd, host: str) -> None:
        self.etcd, self.host = etcd, host
        self._known: dict[str, Entry] | None = None  # the local VMs at the last sync
        self._unsettled = False
        self._swept = 0.0

    async def sync(self, local: dict[str, Entry]) -> None:
        """Bring the index in line with ``local`` (VM name -> its entry, as here)."""
        if time.monotonic() - self._swept > SWEEP:
            await self.sweep(local.keys())
        if local == self._known and not self._unsettled:
            return
        before = self._known if self._known is not None else {}
        try:
            for name in before.keys() - local.keys():
                await release(self.etcd, name, self.host)
            self._unsettled = False
            for name, entry in local.items():
                current = await lookup(self.etcd, name)
                if current is None:
                    await self.etcd.put_if_absent(keys.vm(name), entry.dump())
                    self._unsettled = True  # read it back next time
                elif current.host != self.host:
                    self._unsettled = True
        except ClusterError:
            self._unsettled = True
            raise
        self._known = dict(local)

    async def sweep(self, local: Iterable[str], hold: float = HOLD) -> list[str]:
        """Give back the entries pointing here, placed over ``hold`` seconds ago, of VMs not
        here; their names."""
        found, _ = await entries(self.etcd)
        now, here = time.time(), set(local)
        stale = [name for name, e in found.items() if e.host == self.host
                 and name not in here and now - e.placed > hold]
        for name in stale:
            await release(self.etcd, name, self.host)
        self._swept = time.monotonic()
        return stale

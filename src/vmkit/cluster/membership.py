"""This host as a member of a cluster: registered in etcd under a lease that a background
task renews, with the facts a scheduler and an operator need (CPUs, memory, free disk,
accelerator, QEMU version, images, VMs).

A member that stops renewing (vmkitd killed, host gone, link cut) disappears from
``keys.ALIVE`` when its lease expires, and shows as down. When etcd is unreachable or has
lost quorum, the member keeps serving its own VMs and retries; once etcd is back it renews
its lease, or takes a new one if the old has expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.boot import host_memory_mib
from ..core.core import Core
from ..errors import ClusterError, ConflictError, InvalidInputError
from ..paths import atomic_write
from ..spec import validate_name
from ..state import LIVE
from . import keys
from .etcd import Etcd, Tls
from .index import Entry, Keeper
from .placement import Peer

log = logging.getLogger("vmkit.cluster")
TTL = 10  # seconds a member stays listed after its last renewal


@dataclass(frozen=True)
class ClusterConfig:
    """How vmkitd joins: etcd's client URLs, this host's name, and the API URL others call."""

    endpoints: list[str]
    name: str
    api_url: str
    tls: Tls = field(default_factory=Tls)
    memory_mib: int | None = None  # what this host offers the cluster's VMs (None: all)
    api_ca: str | None = None  # the CA of the members' API certificates (--cluster-ca)


def check_config(endpoints: list[str], name: str, listen: str | None, tls_served: bool,
                 tls: Tls, memory_mib: int | None = None, api_ca: str | None = None
                 ) -> ClusterConfig:
    """Validate ``vmkitd --cluster`` and what goes with it."""
    validate_name(name, "host")
    if api_ca is not None and not os.access(api_ca, os.R_OK):
        raise InvalidInputError(f"--cluster-ca {api_ca}: no readable file there (the PEM of "
                                "the CA that signed the members' --tls-cert)")
    if listen is None:
        raise InvalidInputError("--cluster needs --listen ADDR:PORT: the address other hosts "
                                "of the cluster call this one on")
    addr, _, port = listen.rpartition(":")
    addr = addr.strip("[]")
    if addr in ("0.0.0.0", "::", ""):
        raise InvalidInputError(f"--listen {listen}: a cluster member listens on the address "
                                "other hosts reach it on, not a wildcard")
    host = f"[{addr}]" if ":" in addr else addr
    if memory_mib is not None and not 0 < memory_mib <= host_memory_mib():
        raise InvalidInputError(f"--cluster-memory {memory_mib}: give 1 to {host_memory_mib()} "
                                "(MiB this host offers the cluster's VMs)")
    return ClusterConfig(endpoints, name, f"{'https' if tls_served else 'http'}://{host}:{port}",
                         tls, memory_mib, api_ca)


def host_facts(core: Core, config: ClusterConfig) -> dict[str, Any]:
    """What this host publishes about itself (keys.ALIVE), read now."""
    info = core.info()
    live = [vm for vm in core.store.vms() if vm.state in LIVE]
    return {"name": config.name, "url": config.api_url, "cpus": os.cpu_count() or 1,
            "memory_mib": config.memory_mib or host_memory_mib(),
            "memory_used_mib": sum(vm.spec.memory_mib for vm in live),
            "cpus_used": sum(vm.spec.cpus for vm in live),
            "disk_free_bytes": shutil.disk_usage(core.paths.root).free,
            "accel": info.get("accel"), "qemu_version": info.get("qemu_version"),
            "images": sorted({i.name: i.digest for i in core.store.images()}.items()),
            "vms": sorted(vm.name for vm in core.store.vms()), "pid": os.getpid()}


class Membership:
    """This host's place in the cluster: ``await Membership.join(core, config)``, then
    ``leave()`` when vmkitd stops."""

    def __init__(self, core: Core, config: ClusterConfig, etcd: Etcd) -> None:
        self.core, self.config, self.etcd = core, config, etcd
        self.lease = 0
        self.token = ""
        self._published: dict[str, Any] = {}
        self.keeper = Keeper(etcd, config.name)
        self._task: asyncio.Task[None] | None = None

    @property
    def peer(self) -> Peer:
        """How this member calls the others."""
        return Peer(self.token, self.config.api_ca)

    @classmethod
    async def join(cls, core: Core, config: ClusterConfig) -> Membership:
        """Join: take the cluster's token (making it if this is the first member), record
        this host and start renewing. If etcd does not answer, a host that joined before
        starts with the token it kept and joins once etcd is back; a new one fails."""
        member = cls(core, config, Etcd(config.endpoints, config.tls))
        saved = member._saved_token()
        try:
            await member._check_name()
            member.token = await member._cluster_token()
            await member._register()
        except ClusterError as e:
            if saved is None:
                await member.etcd.close()
                raise ClusterError(f"cannot join the cluster: {e.message}") from None
            log.warning("joining later: %s", e.message)
            member.token = saved
        member._task = asyncio.create_task(member._renew_forever())
        return member

    async def leave(self) -> None:
        """Stop renewing and drop the lease: the host shows down at once (its record and
        its VMs' records stay)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.lease:
            try:
                await self.etcd.revoke(self.lease)
            except ClusterError as e:
                log.warning("leaving the cluster: %s", e.message)
        await self.etcd.close()

    # --- joining ---------------------------------------------------------------------------

    async def _cluster_token(self) -> str:
        """The cluster's API token: the first member makes it, every member serves it on
        its TCP listener (and keeps it in its token file, for 'vmkit host token')."""
        await self.etcd.put_if_absent(keys.TOKEN, secrets.token_urlsafe(32))
        token = (await self.etcd.get(keys.TOKEN) or b"").decode().strip()
        atomic_write(self.core.paths.token, token.encode() + b"\n", 0o600)
        atomic_write(self._joined, json.dumps(self.config.endpoints).encode())
        return token

    @property
    def _joined(self) -> Path:
        """Written once this home has the cluster's token (its own token file holds it)."""
        return self.core.paths.run / "cluster.json"

    def _saved_token(self) -> str | None:
        """The cluster's token as this home kept it when it joined before, if it did."""
        if not self._joined.exists():
            return None
        return self.core.paths.token.read_text().strip() or None

    def _record(self) -> bytes:
        return json.dumps({"url": self.config.api_url}).encode()

    async def _check_name(self) -> None:
        """Refuse a name that a running member at another URL has."""
        other = await self.etcd.get(keys.member(self.config.name))
        if other is not None and other != self._record() \
                and await self.etcd.get(keys.alive(self.config.name)) is not None:
            raise ConflictError(f"host name {self.config.name!r} is taken by a running member "
                                f"({json.loads(other)['url']}): give --host-name another name")

    async def _register(self) -> None:
        """Record the host (a key that outlives it), then publish its facts under a new
        lease."""
        await self.etcd.put(keys.member(self.config.name), self._record())
        self.lease = await self.etcd.grant(TTL)
        await self._publish(force=True)

    async def _publish(self, force: bool = False) -> None:
        """Write this host's facts under the lease, when they changed."""
        facts = host_facts(self.core, self.config)
        if force or facts != self._published:
            await self.etcd.put(keys.alive(self.config.name),
                                json.dumps({**facts, "seen": time.time()}), self.lease)
            self._published = facts
        await self.keeper.sync({vm.name: Entry(self.config.name, vm.spec.cpus,
                                               vm.spec.memory_mib, vm.spec.image)
                                for vm in self.core.store.vms()})

    # --- staying -------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        trouble = False
        while True:
            await asyncio.sleep(TTL / 4)
            try:
                await self._renew()
                if trouble:
                    log.info("etcd answers again; this host is a member again")
                trouble = False
            except ClusterError as e:
                if not trouble:
                    log.warning("cannot renew cluster membership: %s", e.message)
                trouble = True
            except Exception:  # the loop must outlive any one failure
                log.exception("renewing cluster membership")

    async def _renew(self) -> None:
        if not self.lease:  # joined while etcd was away
            self.token = await self._cluster_token()
            await self._register()
            return
        if await self.etcd.keepalive(self.lease) <= 0:  # expired while etcd was away
            log.info("the cluster lease expired; taking a new one")
            self.lease = await self.etcd.grant(TTL)
            self._published = {}
        await self._publish()

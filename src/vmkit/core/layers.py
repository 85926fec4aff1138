"""A VM's disk is a chain of qcow2 layers (machine/layers.py); only the top one is written.
Freezing the top layer (a new empty one goes above it) is how snapshots, exports and disk
diffs get a disk that no longer changes, taken with the VM's memory when asked.

This module owns which layers are alive: those of VMs and snapshots in the store, and those
pinned by work in progress. Garbage collection deletes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import AgentError, HostError, InvalidInputError, NoSpaceError, VmkitError
from ..machine import disks, layers, vmstate
from ..machine.process import Machine
from ..paths import new_id
from ..state import LIVE, VmState, require
from ..store import VmRecord
from .registry import Registry


log = logging.getLogger("vmkit.core")
# Limits how fast a save writes (bytes/s), to spare the host's disk; unset: as fast as it can.
BANDWIDTH_ENV = "VMKIT_SAVE_BANDWIDTH"


class DiskLayers:
    def __init__(self, reg: Registry) -> None:
        self.core = reg
        self._pinned: set[str] = set()  # disk layers in use but not (yet) in the store
        self.writing: set[str] = set()  # snapshot directories being written
        self.lock = asyncio.Lock()  # garbage collection vs. a layer being registered

    @contextlib.contextmanager
    def pinned(self, layer: str) -> Iterator[None]:
        """Keep ``layer`` from garbage collection while the block runs."""
        self._pinned.add(layer)
        try:
            yield
        finally:
            self._pinned.discard(layer)

    def pin(self, layer: str) -> None:
        """Keep ``layer`` until ``unpin``: for work that outlives a call (an export stream)."""
        self._pinned.add(layer)

    def unpin(self, layer: str) -> None:
        self._pinned.discard(layer)

    # --- freezing ------------------------------------------------------------------------

    async def freeze_now(self, vm: str, action: str, state: Path | None = None
                         ) -> tuple[VmRecord, str]:
        """Freeze VM ``vm``'s top disk layer now, for ``action`` ("export", "diff") to read
        it, and with ``state`` its memory too. Returns the record as it was and the frozen
        layer, which stays pinned until ``unpin(layer)``."""
        core = self.core
        require(action, core.record(vm).state, vm)  # at once, not after the lock
        async with core.locks[vm]:
            rec = core.record(vm)
            require(action, rec.state, vm)
            machine = core.machines.get(vm) if rec.state in LIVE else None
            if state is not None and machine is None:
                raise InvalidInputError(f"VM {vm} is {rec.state}: it has no memory to "
                                        f"{action}; start it, or leave the memory out")
            self.pin(rec.disk)  # kept even if the VM goes meanwhile
            try:
                await self.freeze(rec, machine, state)
            except BaseException:
                self.unpin(rec.disk)
                raise
        return rec, rec.disk

    async def freeze(self, rec: VmRecord, machine: Machine | None, state: Path | None) -> None:
        """Freeze the VM's top disk layer (``rec.disk``): its writes go to a new layer from
        now on. With ``state``, also save the running VM's memory there, matching the disk.
        The caller holds the VM's lock."""
        if machine is None:
            await self._new_top_layer(rec, None)
        elif state is not None:
            await self._save(rec, machine, state)
        else:
            await self._freeze_disk(rec, machine)

    async def _save(self, rec: VmRecord, machine: Machine, state: Path) -> None:
        """Pause, freeze the disk, save RAM and devices, resume: disk and memory match."""
        saving = self.core.paths.vm(rec.name).saving
        pause = rec.state == VmState.RUNNING
        if pause:
            saving.touch()  # a daemon that dies now tells its successor to resume the guest
            await machine.execute("stop")
        try:
            await self._new_top_layer(rec, machine)
            bandwidth = int(os.environ.get(BANDWIDTH_ENV, "0")) or None
            await vmstate.save(machine, state, bandwidth=bandwidth)
        except BaseException as e:
            explained = self.explain(e, f"the snapshot of {rec.name}")
            # Free the space first: resuming may need to write to the disk image.
            state.unlink(missing_ok=True)
            if explained is e:
                raise
            raise explained from e
        finally:
            if pause and not machine.exited.is_set():
                with contextlib.suppress(VmkitError):
                    await machine.execute("cont")
            saving.unlink(missing_ok=True)

    async def _freeze_disk(self, rec: VmRecord, machine: Machine) -> None:
        """A disk-only freeze of a running VM, its filesystems frozen if the agent can."""
        frozen = False
        with contextlib.suppress(AgentError):
            if machine.agent.connected:
                await machine.agent.execute("guest-fsfreeze-freeze", timeout=5.0)
                frozen = True
        try:
            await self._new_top_layer(rec, machine)
        finally:
            if frozen:
                with contextlib.suppress(AgentError):
                    await machine.agent.execute("guest-fsfreeze-thaw", timeout=5.0)

    async def _new_top_layer(self, rec: VmRecord, machine: Machine | None) -> None:
        """Freeze the VM's top disk layer: put a new, empty one above it for its writes."""
        core = self.core
        layer = new_id()
        path = core.paths.disk(layer)
        async with self.lock:
            if machine is not None:
                await layers.push(machine, path, core.disk_path(rec), core.jail)
            else:
                await disks.create_overlay(path, core.disk_path(rec), "qcow2")
            core.store.set_vm_disk(rec.name, layer, rec.head)

    def explain(self, error: BaseException, what: str) -> BaseException:
        """A save that failed for lack of space says so, whatever layer noticed it."""
        if isinstance(error, NoSpaceError) or not isinstance(error, (VmkitError, OSError)):
            return error
        root = self.core.paths.root
        free = shutil.disk_usage(root).free
        text = str(getattr(error, "message", error))
        if "No space" in text or free < 16 << 20:
            return NoSpaceError(f"{what} failed: VMKIT_HOME ({root}) is full "
                                f"({free >> 20} MiB free); free some space, e.g. remove old "
                                "snapshots with 'vmkit snapshot rm', and try again")
        return error

    # --- recovery and collection ------------------------------------------------------------

    async def recover(self, rec: VmRecord, machine: Machine) -> None:
        """Re-attaching after a daemon crash: finish what a save in progress left undone."""
        saving = self.core.paths.vm(rec.name).saving
        if saving.exists():  # the guest is paused for a save that nobody will finish
            with contextlib.suppress(VmkitError):
                await vmstate.cancel(machine)
                for _ in range(500):
                    info = await machine.execute("query-migrate")
                    if info.get("status") not in ("setup", "active", "cancelling", "device"):
                        break
                    await asyncio.sleep(0.01)
                await machine.execute("cont")
            saving.unlink(missing_ok=True)
        # The daemon may have died after QEMU moved to a new top layer, before recording it.
        with contextlib.suppress(VmkitError, KeyError, IndexError):
            layer = await layers.top(machine)
            if layer is not None and layer != rec.disk:
                self.core.store.set_vm_disk(rec.name, layer, rec.head)

    async def collect_garbage(self) -> None:
        """Delete disk layers and snapshot directories nothing refers to any more."""
        store, paths = self.core.store, self.core.paths
        async with self.lock:
            alive = ({r.disk for r in store.vms() if r.disk}
                     | {s.layer for s in store.snapshots()} | self._pinned)
            try:
                garbage = await asyncio.to_thread(
                    disks.unreferenced, paths.disks, [paths.disk(x) for x in alive])
            except HostError as e:
                log.warning("not collecting disk layers: %s", e.message)
                return
            for path in garbage:
                path.unlink(missing_ok=True)
            keep = {s.id for s in store.snapshots()} | self.writing
            for d in paths.snapshots.iterdir():
                if d.name.removesuffix(".tmp") not in keep:
                    shutil.rmtree(d, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

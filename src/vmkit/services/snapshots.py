"""Snapshots, restores, forks and templates: going back in time and cloning a running VM.

A snapshot is a frozen disk layer (see disks.py) and, when taken of a running VM, QEMU's saved
state (RAM, CPUs, devices) in ``snapshots/<id>/state``. Taking one pauses the guest only for
the save itself (about 0.1 s for 256 MiB). A restore starts a fresh QEMU on a new top layer
above the snapshot's and loads ``state`` into it.

A fork needs the snapshot's RAM as a file: the first fork of a snapshot loads ``state`` once
into a shared RAM file (``ram``) and saves the devices alone (``devices``). Every fork then
maps ``ram`` copy-on-write and loads only ``devices``: no RAM is copied, and forks share the
pages they have not written. The fork gets its own identity (identity.py) before it is ready.

Snapshot files never change once written: forks and restores only read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.boot import host_memory_mib
from ..core.core import Core
from ..core.describe import snapshot_label
from ..core.launch import Arrival, Resume, fresh_identity
from ..core.layers import fsync_dir
from ..errors import ConflictError, HostError, InvalidInputError, NoSpaceError, NotFoundError, VmkitError
from ..machine import disks, identity, vmstate
from ..machine.argv import RamFile, build_argv
from ..machine.identity import Identity, random_mac
from ..networks.ports import check_ports_free
from ..paths import HomePaths, VmPaths, new_id
from ..spec import make_spec, parse_port, validate_name
from ..state import LIVE, VmState, require
from ..store import SnapshotRecord, Store, Template

log = logging.getLogger("vmkit.snapshots")
S = VmState


class Snapshots:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._preparing: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._building: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        core.hooks.removal.append(self.check_vm_removable)

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def paths(self) -> HomePaths:
        return self.core.paths

    # --- queries -----------------------------------------------------------------------

    def label(self, snap_id: str | None) -> str | None:
        """How users name a snapshot: VM@SNAP, or the template that keeps it."""
        return snapshot_label(self.store, snap_id)

    def describe(self, snap: SnapshotRecord) -> dict[str, Any]:
        sp = self.paths.snapshot(snap.id)
        size = disks.allocated(self.paths.disk(snap.layer)) + sum(
            disks.allocated(f) for f in (sp.state, sp.ram, sp.devices))
        vm = self.store.vm(snap.vm) if snap.vm else None
        parent = self.store.snapshot(snap.parent) if snap.parent else None
        return {
            "id": snap.id, "name": snap.name, "vm": snap.vm, "created": snap.created,
            "memory": snap.memory, "paused": snap.paused, "size": size,
            "parent": parent.name if parent else None,
            "current": vm is not None and vm.head == snap.id,
            "forks": self._forks_of(snap.id), "templates": self._templates_of(snap.id),
        }

    def _forks_of(self, snap_id: str) -> list[str]:
        return [v.name for v in self.store.vms() if v.base == snap_id]

    def _templates_of(self, snap_id: str) -> list[str]:
        return [t.name for t in self.store.templates() if t.snapshot == snap_id]

    def of_vm(self, vm: str) -> list[dict[str, Any]]:
        self.core.record(vm)
        return [self.describe(s) for s in self.store.snapshots(vm)]

    def find(self, vm: str, name: str) -> SnapshotRecord:
        return self.core.snapshot(vm, name)

    def get(self, vm: str, name: str) -> dict[str, Any]:
        return self.describe(self.find(vm, name))

    # --- taking snapshots ------------------------------------------------------------------

    async def create(self, vm: str, name: str | None = None, memory: bool = True
                     ) -> dict[str, Any]:
        if name is not None:
            validate_name(name, "snapshot")
        return self.describe(await self._take(vm, name, memory))

    def _free_name(self, vm: str, prefix: str) -> str:
        taken = {s.name for s in self.store.snapshots(vm)}
        return next(n for i in range(1, len(taken) + 2) if (n := f"{prefix}{i}") not in taken)

    async def _take(self, vm: str, name: str | None, memory: bool) -> SnapshotRecord:
        # Fail at once, not after waiting for the lock, if the VM is booting or stopping.
        require("snapshot", self.core.record(vm).state, vm)
        async with self.core.locks[vm]:
            rec = self.core.record(vm)
            require("snapshot", rec.state, vm)
            name = name or self._free_name(vm, "snap")
            if any(s.name == name for s in self.store.snapshots(vm)):
                raise ConflictError(f"VM {vm} already has a snapshot named {name}; choose "
                                    f"another name or remove it with "
                                    f"'vmkit snapshot rm {vm} {name}'")
            machine = self.core.machines.get(vm) if rec.state in LIVE else None
            memory = memory and machine is not None  # a stopped VM has only its disk
            snap_id = new_id()
            final = self.paths.snapshot(snap_id)
            work = VmPaths(final.dir.with_name(f"{snap_id}.tmp"))  # state file lands here first
            self.core.layers.writing.add(snap_id)
            try:
                work.dir.mkdir(mode=0o700)
                await self.core.layers.freeze(rec, machine,
                                            work.dir / final.state.name if memory else None)
                os.rename(work.dir, final.dir)
                fsync_dir(final.dir.parent)
                snap = SnapshotRecord(snap_id, vm, name, rec.head, time.time(), memory,
                                      rec.state == S.PAUSED, rec.disk, rec.spec)
                self.store.add_snapshot(snap)
            except BaseException as e:
                explained = self.core.layers.explain(e, f"the snapshot of {vm}")  # before space is freed
                shutil.rmtree(work.dir, ignore_errors=True)
                shutil.rmtree(final.dir, ignore_errors=True)
                if explained is e:
                    raise
                raise explained from e
            finally:
                self.core.layers.writing.discard(snap_id)
        return snap

    # --- restore ---------------------------------------------------------------------------

    async def restore(self, vm: str, name: str) -> dict[str, Any]:
        """Bring ``vm`` back to snapshot ``name``: its disk, and its memory if it has one."""
        core = self.core
        require("restore", core.record(vm).state, vm)  # at once, not after the lock
        async with core.locks[vm]:
            rec = core.record(vm)
            require("restore", rec.state, vm)
            snap = self.find(vm, name)
            if (snap.spec.cpus, snap.spec.memory_mib) != (rec.spec.cpus, rec.spec.memory_mib):
                raise InvalidInputError(f"snapshot {name} was taken with other CPUs or memory "
                                        f"than {vm} has now; it cannot be restored onto it")
            core.boot.files(rec.spec)  # its image is still here, before anything changes
            was_live = rec.state in LIVE
            layer = new_id()
            with core.layers.pinned(layer):
                try:
                    await disks.create_overlay(self.paths.disk(layer),
                                               self.paths.disk(snap.layer), "qcow2")
                    await core.vms.replace_process(vm)
                    restored = replace(rec, disk=layer, head=snap.id)
                    if snap.memory:
                        await core.launcher.start(restored, Resume(
                            self.paths.snapshot(snap.id).state, None, snap.paused, Identity()))
                    elif was_live:
                        await core.launcher.start(restored)
                    self.store.set_vm_disk(vm, layer, snap.id)
                except BaseException:
                    self.paths.disk(layer).unlink(missing_ok=True)
                    raise
        await core.layers.collect_garbage()
        return core.get_vm(vm)

    # --- forks and templates ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _source(self, ref: str, purpose: str) -> AsyncIterator[SnapshotRecord]:
        """The memory snapshot ``ref`` names for ``purpose`` ("a fork"): VM@SNAP, a template,
        or a running VM (snapshotted now, and removed again if ``purpose`` fails)."""
        snap, taken = await self._find_source(ref)
        try:
            if not snap.memory:
                raise InvalidInputError(f"snapshot {self.label(snap.id)} holds no memory "
                                        "(taken of a stopped VM or with --no-memory); "
                                        f"{purpose} needs one taken while the VM ran")
            yield snap
        except BaseException:
            if taken:
                await self._drop(ref, snap.id)
            raise

    async def _find_source(self, ref: str) -> tuple[SnapshotRecord, bool]:
        """The snapshot ``ref`` names, and whether it was taken now."""
        vm, at, snap_name = ref.partition("@")
        if at:
            validate_name(vm)
            validate_name(snap_name, "snapshot")
            return self.find(vm, snap_name), False
        validate_name(ref, "source")
        if self.store.template(ref) is not None:
            return self._template(ref)[1], False
        rec = self.store.vm(ref)
        if rec is None:
            raise NotFoundError(f"no VM or template named {ref!r}; 'vmkit ls' and "
                                "'vmkit template ls' list them")
        require("fork", rec.state, ref)
        return await self._take(ref, self._free_name(ref, "fork"), memory=True), True

    async def fork(self, source: str, name: str, ports: list[str] | None = None,
                   network: str | None = None, auto_remove: bool = False) -> dict[str, Any]:
        """A new running VM from a memory snapshot: ready once it has its own identity."""
        validate_name(name)
        if self.store.vm(name):
            raise ConflictError(f"a VM named {name} already exists; choose another name or "
                                f"remove it with 'vmkit rm {name}'")
        # Before a running source is snapshotted for a fork that could not start.
        check_ports_free(parse_port(p) for p in ports or [])
        async with self._source(source, "a fork") as snap:
            await self._fork(snap, name, ports or [], network, auto_remove)
        return self.core.get_vm(name)

    async def _fork(self, snap: SnapshotRecord, name: str, ports: list[str],
                    network: str | None, auto_remove: bool) -> None:
        base = snap.spec
        networks = [network] if network else [base.network, *base.more_networks]
        # Everything the saved devices depend on (display, CD, firmware) comes from the source.
        spec = replace(make_spec(name, base.image, base.cpus, f"{base.memory_mib}M",
                                 f"{base.disk_bytes // 1024}K" if base.disk_bytes else None,
                                 ports, networks, auto_remove, display=base.display,
                                 cdrom=base.cdrom, firmware=base.firmware),
                       disk_bytes=base.disk_bytes, io_iops=base.io_iops, io_bps=base.io_bps,
                       ssh_keys=base.ssh_keys, user_data=base.user_data, env=dict(base.env))
        nics = len(base.attachments())
        if len(spec.attachments()) != nics:
            raise InvalidInputError(f"{self.label(snap.id)} was taken with {nics} network "
                                    "card(s); its forks must have as many (choose --network "
                                    "to match)")
        self.core.networks.check(spec.attachments())
        await self._prepare(snap)
        sp = self.paths.snapshot(snap.id)

        async def disk(path: Path) -> None:
            await disks.create_overlay(path, self.paths.disk(snap.layer), "qcow2")

        mac = random_mac()
        resume = Resume(sp.devices, RamFile(sp.ram, shared=False), False,
                        fresh_identity(spec, mac))
        await self.core.launcher.register(spec, Arrival(disk, mac, base=snap.id, resume=resume))

    async def _prepare(self, snap: SnapshotRecord) -> None:
        """Make the snapshot forkable (once): its RAM as a file, and its devices alone."""
        sp = self.paths.snapshot(snap.id)
        async with self._preparing[snap.id]:
            if sp.devices.exists():
                return
            if shutil.disk_usage(sp.dir).free < (snap.spec.memory_mib << 20) + (64 << 20):
                raise NoSpaceError(f"forking needs {snap.spec.memory_mib} MiB free in "
                                   f"VMKIT_HOME for the snapshot's RAM file; free some space")
            core = self.core
            # No port forwards: the source may be running and hold them. They are not part
            # of the saved state (slirp saves its DHCP leases, not its hostfwd rules).
            spec = replace(snap.spec, ports=())
            work = VmPaths(sp.dir / "prepare")
            shutil.rmtree(work.dir, ignore_errors=True)
            work.dir.mkdir(mode=0o700)
            boot = core.boot.files(spec, work.dir)
            # NICs on private networks need backends of their kind; these lead nowhere: this
            # QEMU never runs its guest.
            nics = core.networks.plug_loose(f"prepare-{snap.id}", spec, work.dir)
            argv = build_argv(spec, boot, work, core.boot.facts(boot), random_mac(),
                              self.paths.disk(snap.layer), ram=RamFile(work.dir / "ram", True),
                              incoming=True, readonly_disk=True, nics=nics)
            try:
                machine = await core.launcher.start_qemu(
                    spec, argv, work, boot, self.paths.disk(snap.layer), disk_writable=False)
                try:
                    await vmstate.load(machine, sp.state)
                    await vmstate.save(machine, work.dir / "devices", ignore_shared=True)
                except VmkitError as e:
                    raise HostError(f"cannot prepare {self.label(snap.id)} for forking: "
                                    f"{e.message}") from None
                finally:
                    await machine.kill()
            finally:
                core.networks.unplug_loose(f"prepare-{snap.id}", spec)
            fd = os.open(work.dir / "ram", os.O_RDONLY)
            try:
                await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)
            os.rename(work.dir / "ram", sp.ram)
            os.rename(work.dir / "devices", sp.devices)  # last: its presence means "ready"
            fsync_dir(sp.dir)
            shutil.rmtree(work.dir, ignore_errors=True)

    def list_templates(self) -> list[dict[str, Any]]:
        return [self.get_template(t.name) for t in self.store.templates()]

    def _template(self, name: str) -> tuple[Template, SnapshotRecord]:
        t = self.store.template(name)
        snap = self.store.snapshot(t.snapshot) if t else None
        if t is None or snap is None:
            raise NotFoundError(f"no template named {name!r}; 'vmkit template ls' lists them")
        return t, snap

    def get_template(self, name: str) -> dict[str, Any]:
        t, snap = self._template(name)
        return {"name": t.name, "created": t.created, "image": snap.spec.image,
                "cpus": snap.spec.cpus, "memory_mib": snap.spec.memory_mib,
                "source": f"{snap.vm}@{snap.name}" if snap.vm else None,
                "forks": self._forks_of(snap.id), "size": self.describe(snap)["size"]}

    async def create_template(self, name: str, source: str) -> dict[str, Any]:
        validate_name(name, "template")
        if self.store.template(name):
            raise ConflictError(f"a template named {name} exists; remove it with "
                                f"'vmkit template rm {name}' or choose another name")
        async with self._source(source, "a template") as snap:
            await self._prepare(snap)
            try:
                self.store.add_template(name, snap.id)
            except sqlite3.IntegrityError:
                raise ConflictError(f"a template named {name} exists") from None
        return self.get_template(name)

    def remove_template(self, name: str) -> None:
        _, snap = self._template(name)
        if snap.vm is None and (forks := self._forks_of(snap.id)):
            raise ConflictError(f"template {name} is the base of VM(s) {', '.join(forks)}; "
                                "remove them first")
        self.store.remove_template(name)
        if self.store.snapshot(snap.id) is None:
            shutil.rmtree(self.paths.snapshot(snap.id).dir, ignore_errors=True)

    async def ensure_fast_template(self, image: str = "tiny", cpus: int = 1,
                                   memory: str = "256M", network: str = "nat"
                                   ) -> dict[str, Any]:
        """The template ``run --fast`` forks for a VM of these settings (checked as a new
        VM's are), made on first use; see fast_template."""
        spec = make_spec("fast", image=image, cpus=cpus, memory=memory, network=network,
                         host_memory_mib=host_memory_mib())
        return self.get_template(await self.fast_template(image, spec.cpus, spec.memory_mib,
                                                          spec.network != "none"))

    async def fast_template(self, image: str, cpus: int, memory_mib: int, nic: bool) -> str:
        """The template ``run --fast`` forks: made on first use by booting ``image`` once and
        snapshotting it as soon as its agent answers."""
        name = f"fast-{image}-{cpus}c{memory_mib}m" + ("" if nic else "-nonic")
        validate_name(name, "template")
        async with self._building[name]:
            if self.store.template(name) is None:
                spec = make_spec(name, image, cpus, f"{memory_mib}M",
                                 network="restricted" if nic else "none")
                await self.core.vms.create(spec)
                try:
                    await identity.wait_resident(self.core.machines[name].agent)
                    snap = await self._take(name, "ready", memory=True)
                    await self._prepare(snap)
                    self.store.add_template(name, snap.id)
                finally:  # the snapshot stays, kept by the template
                    await self.core.vms.discard(name)
        return name

    # --- removal and recovery ------------------------------------------------------------

    def _dependents(self, snap_ids: set[str], besides: str = "") -> list[str]:
        forks = [f"VM {v.name}" for v in self.store.vms() if v.base in snap_ids
                 and v.name != besides]
        templates = [f"template {t.name}" for t in self.store.templates()
                     if t.snapshot in snap_ids]
        return forks + templates

    def check_vm_removable(self, vm: str) -> None:
        ids = {s.id for s in self.store.snapshots(vm)}
        if users := self._dependents(ids, besides=vm):
            raise ConflictError(f"VM {vm} cannot be removed: its snapshots are used by "
                                f"{', '.join(users)}; remove those first ('vmkit rm', "
                                "'vmkit template rm')")

    async def remove(self, vm: str, name: str) -> None:
        async with self.core.locks[vm]:
            snap = self.find(vm, name)
            if users := self._dependents({snap.id}):
                raise ConflictError(f"snapshot {vm}@{name} is used by {', '.join(users)}; "
                                    "remove those first")
            self._delete(snap.id)
        await self.core.layers.collect_garbage()

    async def _drop(self, vm: str, snap_id: str) -> None:
        """Remove VM ``vm``'s snapshot taken for a fork or template that failed, unless
        something came to use it meanwhile."""
        async with self.core.locks[vm]:
            if self.store.snapshot(snap_id) is not None and not self._dependents({snap_id}):
                self._delete(snap_id)
        await self.core.layers.collect_garbage()

    def _delete(self, snap_id: str) -> None:
        self.store.remove_snapshot(snap_id)
        shutil.rmtree(self.paths.snapshot(snap_id).dir, ignore_errors=True)

"""A VM's life after it is made: start, stop, kill, restart, pause, resume, resize, remove."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import AgentError, InvalidInputError
from ..machine import disks
from ..spec import VmSpec, check_restart, format_size, resized
from ..state import LIVE, VmState, require
from ..store import VmRecord
from .boot import check_disk_fits, host_memory_mib
from .discard import discard
from .guest import Guest
from .launch import Arrival, Launcher
from .layers import DiskLayers
from .registry import Registry
from .request import VmRequest

S = VmState


class Lifecycle:
    def __init__(self, reg: Registry, launcher: Launcher, layers: DiskLayers, guest: Guest
                 ) -> None:
        self.core = reg
        self.launcher = launcher
        self.layers = layers
        self.guest = guest

    async def create_from(self, req: VmRequest) -> dict[str, Any]:
        """Create the VM ``req`` asks for (as ``create``), checked as the CLI's are and
        refused if it wants more memory than this host has."""
        return await self.create(req.spec(host_memory_mib()))

    async def create(self, spec: VmSpec) -> dict[str, Any]:
        """Create ``spec`` on its image (or a blank disk) and boot it; returns when the guest
        agent answers, and for a cloud-init image when cloud-init is done ("cloud_init")."""
        core = self.core
        boot = self.launcher.boot.files(spec)
        check_disk_fits(spec, boot)

        async def disk(path: Path) -> None:
            if boot.rootfs is None:
                await disks.create_empty(path, boot.rootfs_bytes)
            else:
                await disks.create_overlay(path, boot.rootfs, boot.rootfs_format,
                                           spec.disk_bytes or boot.rootfs_bytes)

        _, boot = await self.launcher.register(spec, Arrival(disk))
        # Outside the lock: the user may stop or remove the VM while cloud-init runs.
        provisioned = await self.guest.cloud_init(spec.name) if boot.seed else None
        return {**core.get_vm(spec.name), **({"cloud_init": provisioned} if provisioned else {})}

    async def resize(self, name: str, cpus: int | None = None, memory: str | None = None,
                     disk: str | None = None) -> dict[str, Any]:
        """New CPUs, memory and/or a bigger disk for a stopped VM; the tiny guest grows its
        root filesystem to the disk at its next boot."""
        if cpus is None and memory is None and disk is None:
            raise InvalidInputError("nothing to change: give --cpus, --memory and/or --disk")
        if disk is not None and not disk.strip():
            raise InvalidInputError("--disk needs a size, e.g. 4G")
        core = self.core
        async with core.locks[name]:
            rec = core.record(name)
            require("resize", rec.state, name)
            spec = resized(rec.spec, cpus, memory, disk, host_memory_mib())
            top = core.disk_path(rec)
            if disk is not None:
                now = await asyncio.to_thread(disks.virtual_size, top)
                assert spec.disk_bytes is not None
                if spec.disk_bytes < now:
                    raise InvalidInputError(
                        f"disk {disk} is smaller than VM {name}'s disk ({format_size(now)}): "
                        "vmkit grows disks and never shrinks them (that would cut off data)")
                if spec.disk_bytes > now:
                    await disks.grow(top, spec.disk_bytes)
            core.store.set_vm_spec(name, spec)
        return core.get_vm(name)

    async def update(self, name: str, restart: str | None = None) -> dict[str, Any]:
        """Change what may change on a VM in any state (docker's 'update'): its restart
        policy; "no" calls off a restart that waits."""
        if restart is None:
            raise InvalidInputError("nothing to change: give a restart policy (restart)")
        core = self.core
        async with core.locks[name]:
            spec = core.record(name).spec
            policy = check_restart(restart, spec.auto_remove)
            core.store.set_vm_spec(name, replace(spec, restart=policy))
            if policy == "no":
                self.launcher.watch.cancel_restart(name)
        return core.get_vm(name)

    async def start(self, name: str) -> dict[str, Any] | None:
        """Start a stopped or crashed VM; returns it once its guest is up, or None if it
        runs already (as docker, whose API answers 304 Not Modified then)."""
        core = self.core
        async with core.locks[name]:
            rec = core.record(name)
            if rec.state == S.RUNNING:
                return None
            require("start", rec.state, name)
            await self.launcher.start(rec)
        return core.get_vm(name)

    async def replace_process(self, name: str) -> None:
        """Kill the VM's QEMU, if it runs, for a restore that starts another."""
        core = self.core
        if (machine := core.machines.get(name)) is not None:
            core.replacing.add(name)
            try:
                await machine.kill()
            finally:
                core.replacing.discard(name)

    async def stop(self, name: str, timeout: float = 20.0) -> dict[str, Any] | None:
        """Shut the VM down, forced after ``timeout`` s; None if it is down already."""
        core = self.core
        async with core.locks[name]:
            if self._down_already(name):
                return None
            machine = core.live_machine(name, "stop")
            core.stopping.add(name)
            rec = core.record(name)
            core.store.set_vm_state(name, S.STOPPING, pid=rec.pid, started=rec.started)
            await machine.stop(timeout)
        return self._after_exit(rec)

    async def kill(self, name: str) -> dict[str, Any] | None:
        """End the VM's QEMU at once; None if it is down already."""
        core = self.core
        async with core.locks[name]:
            if self._down_already(name):
                return None
            machine = core.live_machine(name, "kill")
            rec = core.record(name)
            core.stopping.add(name)
            await machine.kill()
        return self._after_exit(rec)

    def _down_already(self, name: str) -> bool:
        """Whether VM ``name`` is stopped or crashed; if so, the restart its policy may have
        waiting is called off (asked to stop, it stays down), and nothing else is done."""
        if self.core.record(name).state in LIVE:
            return False
        self.launcher.watch.cancel_restart(name)
        return True

    def _after_exit(self, before: VmRecord) -> dict[str, Any]:
        """The VM as it is now, or as it was at exit if it removed itself (--rm)."""
        if (rec := self.core.store.vm(before.name)) is not None:
            return self.core.describe(rec)
        return {**self.core.describe(before), "state": S.STOPPED.value, "pid": None,
                "reason": "removed when it stopped (auto_remove)"}

    async def restart(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        require("restart", self.core.record(name).state, name)
        await self.stop(name, timeout)
        return await self.start(name) or self.core.get_vm(name)

    async def pause(self, name: str) -> dict[str, Any]:
        return await self._run_state(name, "pause", "stop", S.PAUSED)

    async def resume(self, name: str) -> dict[str, Any]:
        vm = await self._run_state(name, "resume", "cont", S.RUNNING)
        if (machine := self.core.machines.get(name)) is not None and machine.agent.connected:
            with contextlib.suppress(AgentError):  # its clock stood still while it was paused
                await machine.agent.set_time()
        return vm

    async def _run_state(self, name: str, action: str, qmp_command: str, state: VmState
                         ) -> dict[str, Any]:
        """Stop or continue the guest's CPUs (QEMU's 'stop'/'cont')."""
        core = self.core
        async with core.locks[name]:
            machine = core.live_machine(name, action)
            await machine.execute(qmp_command)
            rec = core.record(name)
            core.store.set_vm_state(name, state, pid=rec.pid, started=rec.started)
        return core.get_vm(name)

    async def remove(self, name: str, force: bool = False) -> None:
        """Remove a stopped VM. ``force``: kill it first if it runs; a create or start booting
        it then fails (Launcher._raise_if_removed), and a failed create removes its VM."""
        core = self.core
        core.record(name)
        for check in core.hooks.removal:
            check(name)
        self.launcher.watch.cancel_restart(name)
        if not force:
            async with core.locks[name]:
                require("remove", core.record(name).state, name)
                await self.discard(name)
            return
        core.removing.add(name)
        try:
            if (machine := core.machines.get(name)) is not None:  # a boot may hold the lock
                core.stopping.add(name)
                await machine.kill()
            async with core.locks[name]:
                if core.has_vm(name):
                    await self.discard(name)
        finally:
            core.removing.discard(name)

    async def discard(self, name: str) -> None:
        """Remove VM ``name`` now, its QEMU killed, its files and unused layers deleted."""
        await discard(self.core, self.layers, name)

"""The registry of VMs on this host: their records (in the Store), locks and QEMU
processes, and the shared state every part of the core works on. ``Core`` (core.py) adds the
parts; each part gets the Registry, never the Core, so the arrows point one way."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConflictError, HostError, LaunchError, NotFoundError
from ..events import OVERFLOW, Changes, bursts
from ..images.store import ImageStore
from ..machine import jail
from ..machine.console import ConsoleHub
from ..machine.limits import Limits
from ..machine.process import Machine
from ..networks.service import Networks
from ..paths import HomePaths
from ..state import LIVE, require
from ..store import SnapshotRecord, Store, VmRecord
from .addresses import Addresses
from .describe import describe_operation, describe_vm


class AlreadyRunningError(HostError):
    """Another vmkitd owns this VMKIT_HOME."""


@dataclass
class Hooks:
    """What services ask the core to do for them, without the core knowing them."""

    # Re-attaching to a VM's QEMU after a daemon restart: undo what was left half done.
    reattach: list[Callable[[VmRecord, Machine], Awaitable[None]]] = field(default_factory=list)
    # Before a VM is removed: raise ConflictError if something still needs it.
    removal: list[Callable[[str], None]] = field(default_factory=list)


class Registry:
    """The VMs of one VMKIT_HOME and what is known of them."""

    store: Store
    images: ImageStore
    jail: jail.Jail | None
    networks: Networks

    def __init__(self, home: Path) -> None:
        self.paths = HomePaths(home.absolute())  # absolute: disk layers name their backing files
        self.machines: dict[str, Machine] = {}
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.changes = Changes()  # what the store changes, for /v1/events
        self.limits = Limits(self.paths.root)
        self.hooks = Hooks()
        self.consoles: dict[str, ConsoleHub] = {}
        self.stopping: set[str] = set()  # VMs we were asked to stop: their exit is no crash
        self.removing: set[str] = set()  # VMs 'rm -f' takes away: a boot of theirs gives up
        self.replacing: set[str] = set()  # VMs whose QEMU a restore replaces: no stop, no crash
        self._tasks: set[asyncio.Task[Any]] = set()
        self.cancels: dict[str, Callable[[], object]] = {}  # running operations that can stop
        self.addresses = Addresses(lambda name: self.changes.publish("vm", name))

    def open_home(self) -> None:
        """Take VMKIT_HOME for this process: no other vmkitd may use it meanwhile."""
        root = self.paths.root
        if "," in str(root):
            raise HostError(f"VMKIT_HOME {root} contains a comma, which QEMU cannot take in paths")
        try:
            dirs = (root, self.paths.run, self.paths.images, self.paths.vms, self.paths.disks,
                    self.paths.snapshots)
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
            for d in dirs:
                if d != self.paths.images:
                    d.chmod(0o700)
            self._lock_fd = os.open(self.paths.run / "vmkitd.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self.store = Store(self.paths.db, on_change=self.changes.publish)
        except (OSError, sqlite3.Error) as e:
            raise HostError(f"VMKIT_HOME {root} is not writable ({e}); set VMKIT_HOME to a "
                            "directory you own") from e
        try:  # one daemon per VMKIT_HOME, for as long as this process lives
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunningError(f"vmkitd is already running for {root}") from None
        self.images = ImageStore(self.paths.images, self.paths.deb_cache, self.store)
        try:
            self.jail = jail.for_host(self.paths.jail)
        except (OSError, subprocess.CalledProcessError) as e:
            raise HostError(f"cannot set up the user QEMU runs as ({jail.USER}): {e}; "
                            "or run vmkitd with VMKIT_JAIL=0 to run QEMU unjailed") from e
        self.networks = Networks(self.store, self.paths, self.jail)

    async def close(self) -> None:
        """Stop serving; every VM keeps running and the next daemon re-attaches to it."""
        for hub in self.consoles.values():
            await hub.close()
        for machine in list(self.machines.values()):
            await machine.detach()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, kept referenced until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- the registry ----------------------------------------------------------------------

    def record(self, name: str) -> VmRecord:
        rec = self.store.vm(name)
        if rec is None:
            raise NotFoundError(f"no VM named {name!r}; 'vmkit ls' lists them")
        return rec

    def snapshot(self, vm: str, name: str) -> SnapshotRecord:
        """VM ``vm``'s snapshot named ``name``."""
        self.record(vm)
        for snap in self.store.snapshots(vm):
            if snap.name == name:
                return snap
        raise NotFoundError(f"VM {vm} has no snapshot {name!r}; "
                            f"'vmkit snapshot ls {vm}' lists them")

    def operation(self, op_id: str) -> dict[str, Any]:
        """A long-running operation (an image build, a migration, a run), as it is now."""
        op = self.store.operation(op_id)
        if op is None:
            raise NotFoundError(f"operation {op_id!r} not found")
        return describe_operation(op)

    def operations(self, limit: int) -> list[dict[str, Any]]:
        """The latest long-running operations, newest first (the dashboard's log)."""
        return [describe_operation(op) for op in self.store.operations(limit)]

    def cancel_operation(self, op_id: str) -> dict[str, Any]:
        """Call off a running image build, image import or run; what it made so far goes."""
        op = self.operation(op_id)
        if (cancel := self.cancels.get(op_id)) is None:
            raise ConflictError(f"operation {op_id} is {op['state']}; only a running image "
                                "build, image import or run can be cancelled")
        cancel()
        return op

    def describe(self, rec: VmRecord) -> dict[str, Any]:
        """The VM as the API shows it, with its guest's addresses as last learnt."""
        machine = self.machines.get(rec.name) if rec.state in LIVE else None
        return {**describe_vm(rec, self.store),
                "ips": self.addresses.get(rec.name, machine, self.spawn)}

    def list_vms(self) -> list[dict[str, Any]]:
        return [self.describe(r) for r in self.store.vms()]

    def get_vm(self, name: str) -> dict[str, Any]:
        return self.describe(self.record(name))

    async def feed(self, idle: float) -> AsyncIterator[tuple[str, Any] | None]:
        """What changes here, as (event, data), for /v1/events: first ("vms", every VM), then
        ("vm", {"name", "vm"}) each time a VM changes (vm: None once removed), ("snapshots",
        {"vm"}) when a VM's snapshots do, and "vms" again after changes came faster than
        they were read. None after ``idle`` seconds without a change; ends when the daemon
        stops (Changes.close)."""
        with self.changes.subscribe() as queue:
            yield "vms", self.list_vms()  # after subscribing, so no change falls between
            async for burst in bursts(queue, idle):
                if not burst:
                    yield None
                for kind, name in burst:
                    if kind == OVERFLOW[0]:
                        yield "vms", self.list_vms()
                    elif kind == "vm":
                        try:
                            vm: dict[str, Any] | None = self.get_vm(name)
                        except NotFoundError:
                            vm = None
                        yield "vm", {"name": name, "vm": vm}
                    else:
                        yield kind, {"vm": name}

    def has_vm(self, name: str) -> bool:
        return self.store.vm(name) is not None

    def is_live(self, name: str) -> bool:
        """The VM exists and its QEMU runs (or is starting or stopping)."""
        rec = self.store.vm(name)
        return rec is not None and rec.state in LIVE

    def live_machine(self, name: str, action: str) -> Machine:
        rec = self.record(name)
        require(action, rec.state, name)
        machine = self.machines.get(name)
        if machine is None:  # state says live but we hold no process: treat as gone
            raise LaunchError(f"VM {name} has no QEMU process; restart it with 'vmkit start {name}'")
        return machine

    def disk_path(self, rec: VmRecord) -> Path:
        """The VM's writable disk layer."""
        return self.paths.disk(rec.disk)

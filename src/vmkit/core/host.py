"""The Host: the one owner of state on this machine. The API calls it; it calls the rest.

It keeps the registry of VMs (in the Store), runs each VM's QEMU through a Machine, watches
their QMP events to keep states true, and on start re-attaches to every QEMU still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..machine import disks, identity
from ..machine.agent import GuestAgent
from ..machine.console import ConsoleHub
from ..events import Changes
from ..errors import (
    AgentError, ConflictError, HostError, InvalidInputError, LaunchError, NotFoundError, VmkitError)
from ..machine.identity import random_mac
from ..images import seed
from ..spec import cloud
from ..images import importer
from ..images.debian import DebianOptions
from ..images.store import Cancelled, ImageStore
from ..machine import jail, qemu, vmstate
from ..machine.accel import probe_host
from ..machine.argv import OVMF_VARS, BootFiles, HostFacts, build_argv
from ..machine.qemu import Qemu
from ..machine.limits import Limits
from ..machine.process import (
    Machine, exit_status_text, find_qemu, log_tail, pid_matches, read_exit_status)
from ..services.forensics.service import Forensics
from ..services.migration import Migrations
from ..networks.ports import check_ports_free, explain_launch_error, free_port
from ..networks.service import Networks
from ..paths import HomePaths, VmPaths, atomic_write, new_id
from ..services.portable.service import Portable
from ..services.snapshots import Resume, Snapshots
from ..services.stats import Stats
from ..spec import PortForward, VmSpec, format_size, resized
from ..state import LIVE, VmState, require
from ..store import ImageRecord, Operation, Store, VmRecord

log = logging.getLogger("vmkit.core")
AGENT_TIMEOUT = 60.0  # seconds from QEMU start until the guest agent must answer
PC_AGENT_TIMEOUT = 300.0  # the same for a full OS (systemd under TCG takes a minute or more)
CLOUD_INIT_TIMEOUT = 1800.0  # a user's cloud-config may install packages
# How an unjailed QEMU ended is lost with the vmkitd that started it (its parent); a jail
# writes it down (VmPaths.exit_status).
UNKNOWN_EXIT = "its exit code or signal is unknown: it outlived the vmkitd that started it"
S = VmState


class AlreadyRunningError(HostError):
    """Another vmkitd owns this VMKIT_HOME."""


def host_memory_mib() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


def describe_vm(rec: VmRecord) -> dict[str, Any]:
    """The public view of a VM, as the API and CLI show it."""
    spec = rec.spec
    return {
        "name": spec.name, "state": rec.state.value, "image": spec.image, "cpus": spec.cpus,
        "memory": format_size(spec.memory_mib << 20), "memory_mib": spec.memory_mib,
        "disk": format_size(spec.disk_bytes) if spec.disk_bytes else None,
        "network": spec.network, "networks": list(spec.attachments()), "mac": rec.mac,
        "pid": rec.pid,
        "ports": [{"host_addr": p.host_addr, "host_port": p.host_port,
                   "guest_port": p.guest_port, "proto": p.proto} for p in spec.ports],
        "auto_remove": spec.auto_remove, "disposable": spec.disposable,
        "io_iops": spec.io_iops, "io_bps": spec.io_bps, "created": rec.created,
        "started": rec.started, "display": spec.display,
        "reason": rec.reason, "cdrom": spec.cdrom, "firmware": spec.firmware,
        "ssh_keys": spec.ssh_keys,
    }


async def _agent_or_exit(machine: Machine, timeout: float) -> None:
    """Wait for the guest agent, or for QEMU to exit: a guest that dies while booting is
    reported at once (by the caller), not after the agent's whole timeout."""
    connect = asyncio.ensure_future(machine.agent.connect(timeout=timeout))
    exited = asyncio.ensure_future(machine.exited.wait())
    try:
        await asyncio.wait((connect, exited), return_when=asyncio.FIRST_COMPLETED)
        if connect.done():
            connect.result()  # raises the agent's error
    finally:
        for task in (connect, exited):
            task.cancel()


def with_ssh_port(spec: VmSpec, boot: BootFiles) -> VmSpec:
    """A cloud-init guest runs sshd: forward a free loopback port to it for 'vmkit ssh',
    unless the user forwarded one or the VM has no user-mode NIC to forward through."""
    if boot.seed is None or any(p.guest_port == 22 and p.proto == "tcp" for p in spec.ports) \
            or not {"nat", "restricted"} & set(spec.attachments()):
        return spec
    return replace(spec, ports=(*spec.ports, PortForward(free_port(), 22)))


def _source_name(source: Any) -> str:
    """The imported file's name (images imported by vmkit 0.1 kept the name alone)."""
    return Path(source["path"]).name if isinstance(source, dict) else str(source)


def describe_image(image: ImageRecord) -> dict[str, Any]:
    meta = image.meta
    return {"name": image.name, "digest": image.digest, "kind": image.kind,
            "size": image.size, "disk": format_size(int(meta["rootfs_bytes"])),
            "created": image.created, "format": meta.get("format", "raw"),
            "description": meta.get("description") or (
                f"imported from {_source_name(meta['source'])}" if "source" in meta
                else "vmkit tiny guest"),
            "bootable": meta.get("bootable"), "cloud_init": bool(meta.get("cloud_init")),
            "source": meta["source"] if isinstance(meta.get("source"), dict) else None}


def describe_operation(op: Operation) -> dict[str, Any]:
    return dict(op.__dict__)


class Host:
    def __init__(self, home: Path) -> None:
        self.paths = HomePaths(home.absolute())  # absolute: disk layers name their backing files
        self.machines: dict[str, Machine] = {}
        self._consoles: dict[str, ConsoleHub] = {}
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._stopping: set[str] = set()  # VMs we were asked to stop: their exit is no crash
        self._removing: set[str] = set()  # VMs 'rm -f' takes away: a boot of theirs gives up
        self._replacing: set[str] = set()  # VMs whose QEMU a restore replaces: no stop, no crash
        self._builds: dict[str, Operation] = {}
        self._cancels: dict[str, threading.Event] = {}  # by operation id
        self._facts: tuple[HostFacts, str] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.snapshots = Snapshots(self)
        self.migrations = Migrations(self)
        self.portable = Portable(self)
        self.forensics = Forensics(self)
        self.stats = Stats(self)
        self.limits = Limits(self.paths.root)
        self.networks = Networks(self)
        self.changes = Changes()  # what the store changes, for /v1/events

    # --- daemon lifecycle ----------------------------------------------------------

    async def open(self) -> None:
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
        try:  # one Host per VMKIT_HOME, for as long as this process lives
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunningError(f"vmkitd is already running for {root}") from None
        self.images = ImageStore(self.paths.images, self.paths.deb_cache, self.store)
        try:
            self.jail = jail.for_host(self.paths.jail)
        except (OSError, subprocess.CalledProcessError) as e:
            raise HostError(f"cannot set up the user QEMU runs as ({jail.USER}): {e}; "
                            "or run vmkitd with VMKIT_JAIL=0 to run QEMU unjailed") from e
        self.store.fail_interrupted_operations()
        self.images.clean()
        for rec in self.store.vms():
            if rec.creating:
                log.warning("removing VM %s: vmkitd stopped before its create finished",
                            rec.name)
                await self.discard(rec.name)
                continue
            if await self.migrations.discard_arrival(rec.name):
                continue
            self._move_legacy_disk(rec)
            await self._reattach(rec)
        self._remove_stray_vm_dirs()
        self.limits.clean()
        await self.snapshots.collect_garbage()
        self.portable.clean()
        self.networks.restore()

    def _move_legacy_disk(self, rec: VmRecord) -> None:
        """VMs made before disk layers kept their disk in their own directory: move it."""
        legacy = self.paths.vm(rec.name).legacy_disk
        if not rec.disk and legacy.exists():
            layer = new_id()
            os.rename(legacy, self.paths.disk(layer))  # a running QEMU keeps its open file
            self.store.set_vm_disk(rec.name, layer, rec.head)

    def _remove_stray_vm_dirs(self) -> None:
        """Remove directories under vms/ of no VM: left by creates that a killed vmkitd never
        got to record (every VM being made, migrated or imported here is recorded first)."""
        for path in self.paths.vms.iterdir():
            if path.is_dir() and not path.is_symlink() and not self.has_vm(path.name):
                log.warning("removing %s: no VM has this directory", path)
                shutil.rmtree(path, ignore_errors=True)

    async def close(self) -> None:
        """Stop serving; every VM keeps running and the next daemon re-attaches to it."""
        for hub in self._consoles.values():
            await hub.close()
        for machine in list(self.machines.values()):
            await machine.detach()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _qemu_pid(self, rec: VmRecord) -> int | None:
        """The pid of this VM's QEMU if it runs: as recorded, or found among all processes
        (a daemon killed between starting QEMU and recording its pid)."""
        vmp = self.paths.vm(rec.name)
        return rec.pid if rec.pid and pid_matches(rec.pid, vmp) else find_qemu(vmp)

    async def _reattach(self, rec: VmRecord) -> None:
        if rec.state not in LIVE:
            return
        vmp = self.paths.vm(rec.name)
        if pid := self._qemu_pid(rec):
            try:
                machine = await Machine.attach(vmp, pid, self.handler(rec.name))
            except VmkitError as e:
                self.store.set_vm_state(rec.name, S.CRASHED, reason=f"cannot re-attach: {e}")
                return
            self.machines[rec.name] = machine
            await self.migrations.recover(machine)
            await self.snapshots.recover(rec, machine)
            state = S.PAUSED if await machine.status() == "paused" else S.RUNNING
            self.store.set_vm_state(rec.name, state, pid=pid, started=rec.started)
            self.spawn(self._connect_agent(machine))
        elif rec.state == S.STARTING and rec.pid is None:  # vmkitd died before QEMU ran
            self.store.set_vm_state(rec.name, S.STOPPED,
                                    reason="its start was interrupted when vmkitd stopped")
        else:
            code = read_exit_status(vmp.exit_status)
            what = (f"QEMU (pid {rec.pid}) {exit_status_text(code)} while vmkitd was not running"
                    if code is not None else
                    f"QEMU (pid {rec.pid}) exited while vmkitd was not running; {UNKNOWN_EXIT}")
            self.store.set_vm_state(rec.name, S.CRASHED, reason=self._crash_reason(rec.name, what))

    @staticmethod
    async def _connect_agent(machine: Machine) -> None:
        try:
            await machine.agent.connect(timeout=AGENT_TIMEOUT)
        except AgentError:
            pass  # exec/stop report it when they need the agent

    # --- host facts ------------------------------------------------------------------

    def host_facts(self, boot: BootFiles | None = None) -> HostFacts:
        """What this host's QEMU runs with. The KVM probe boots a real kernel: ``boot``'s,
        else any image's (tiny's first), else the host's own (accel.py)."""
        if self._facts is None:
            if boot is None or boot.kernel is None:
                boot = next((b for b in map(self._kernel_boot, ("tiny", *self._image_names()))
                             if b is not None), None)
            self._facts = probe_host(boot, self.paths.run / "host.json")
        return self._facts[0]

    def _image_names(self) -> list[str]:
        return [i.name for i in self.store.images()]

    def _kernel_boot(self, name: str) -> BootFiles | None:
        """How image ``name`` boots, if it has a kernel of its own."""
        image = self.store.image(name)
        if image is None or image.kind not in ("tiny", "debian"):
            return None
        return self.images.boot_files(image)

    def boot_files(self, spec: VmSpec, vm_dir: Path | None = None) -> BootFiles:
        """What the VM of ``spec`` boots: its image's files, its CD, and in ``vm_dir`` (its
        own directory by default) its cloud-init seed and UEFI variables, which
        ``write_media`` makes."""
        vm_dir = vm_dir or self.paths.vm(spec.name).dir
        if spec.image is None:  # a blank disk for an OS to be installed from the CD
            boot = BootFiles(None, None, None, spec.disk_bytes or 0, profile="pc", agent=False)
            cloud_init = False
        else:
            image = self.images.get(spec.image)
            boot = self.images.boot_files(image)
            cloud_init = bool(image.meta.get("cloud_init"))
        return replace(
            boot, cdrom=self.images.cdrom(spec.cdrom) if spec.cdrom else None,
            seed=vm_dir / "seed.iso" if cloud_init else None,
            # Firmware only matters where no kernel is booted directly.
            firmware=spec.firmware if boot.kernel is None else "bios",
            efi_vars=vm_dir / "efi-vars.fd" if boot.kernel is None and
            spec.firmware == "uefi" else None)

    @staticmethod
    def write_media(spec: VmSpec, boot: BootFiles) -> None:
        """Make the VM's cloud-init seed and UEFI variable store, where it has none yet."""
        if boot.efi_vars is not None and not boot.efi_vars.exists():
            shutil.copyfile(OVMF_VARS, boot.efi_vars)
        if boot.seed is not None and not boot.seed.exists():
            user_data = cloud.read_user_data(spec.user_data, "user data") if spec.user_data \
                else None
            config = seed.cloud_config(spec.name, spec.ssh_keys, user_data, dict(spec.env))
            # The instance id follows the VM, so a copy of the seed made elsewhere (after a
            # migration) does not make cloud-init provision the guest again at its next boot;
            # a fork has a new name, hence a new instance, as a clone should.
            seed.build_seed(boot.seed, f"vmkit-{spec.name}", spec.name, config)

    def info(self) -> dict[str, Any]:
        facts = json.loads((self.paths.run / "host.json").read_text()) if (
            self.paths.run / "host.json").exists() else {}
        try:
            found: Qemu | None = qemu.current()
        except HostError:
            found = None
        return {"home": str(self.paths.root), "pid": os.getpid(),
                "qemu": found.binary if found else None,
                "qemu_version": found.version if found else None,
                "qemu_features": list(found.features) if found else [],
                "accel": facts.get("facts", {}).get("accel"),
                "accel_reason": facts.get("reason"), "limits": self.limits.describe(),
                "vms": len(self.store.vms()),
                "images": len(self.store.images())}

    # --- images --------------------------------------------------------------------

    def list_images(self) -> list[dict[str, Any]]:
        return [describe_image(i) for i in self.store.images()]

    def get_image(self, name: str) -> dict[str, Any]:
        return describe_image(self.images.get(name))

    def build_image(self, name: str, force: bool = False, builder: str | None = None,
                    options: DebianOptions | None = None) -> dict[str, Any]:
        """Start building ``name`` in the background; returns the operation to follow."""
        if (running := self._builds.get(name)) is not None:
            return self.operation(running.id)
        if self.store.image(name) and not force:
            raise ConflictError(f"image {name!r} exists; rebuild it with --force")
        if force and (users := self._image_users(name)):
            raise ConflictError(f"image {name!r} is used by {', '.join(users)}; "
                                "remove them before rebuilding it")
        return self._image_operation("image-build", name, lambda progress: self.images.build(
            name, progress, builder, options))

    def import_image(self, name: str, source: str) -> dict[str, Any]:
        """Start importing the disk or ISO file at ``source`` (a path on this host) as
        image ``name``; returns the operation to follow."""
        if name in self._builds:
            raise ConflictError(f"image {name!r} is being built or imported already")
        if self.store.image(name):
            raise ConflictError(f"image {name!r} exists; choose another --name or remove it "
                                f"with 'vmkit image rm {name}'")
        path = Path(source)
        if not path.is_absolute():
            raise InvalidInputError(f"give the file's absolute path, not {source!r}")
        importer.inspect(path)  # refuse a bad file now, not in the operation
        return self._image_operation("image-import", name, lambda progress: self.images.import_file(
            name, path, progress))

    def _image_operation(self, kind: str, name: str,
                         work: Callable[[Callable[[float, str], None]], Any]) -> dict[str, Any]:
        op = self.store.add_operation(kind, name)
        self._builds[name] = op
        cancelled = threading.Event()
        self._cancels[op.id] = cancelled

        def progress(fraction: float, message: str) -> None:
            if cancelled.is_set():
                raise Cancelled()
            self.store.update_operation(op.id, progress=fraction, message=message)

        async def run() -> None:
            try:
                await asyncio.to_thread(work, progress)
                self.store.update_operation(op.id, state="succeeded", progress=1.0,
                                            message="done")
            except Cancelled:
                self.store.update_operation(op.id, state="failed", progress=1.0,
                                            message="cancelled", error="cancelled: nothing "
                                            "was stored")
            except Exception as e:  # recorded on the operation for the client to show
                msg = e.message if isinstance(e, VmkitError) else f"{type(e).__name__}: {e}"
                self.store.update_operation(op.id, state="failed", progress=1.0,
                                            message="failed", error=msg)
            finally:
                del self._builds[name]
                self._cancels.pop(op.id, None)

        self.spawn(run())
        return describe_operation(op)

    def cancel_operation(self, op_id: str) -> dict[str, Any]:
        """Stop an image build or import; what it made so far is removed."""
        op = self.operation(op_id)
        if (cancelled := self._cancels.get(op_id)) is None:
            raise ConflictError(f"operation {op_id} is {op['state']}; only a running image "
                                "build or import can be cancelled")
        cancelled.set()
        return op

    def operation(self, op_id: str) -> dict[str, Any]:
        op = self.store.operation(op_id)
        if op is None:
            raise NotFoundError(f"operation {op_id!r} not found")
        return describe_operation(op)

    def _image_users(self, name: str) -> list[str]:
        """VMs, and snapshots kept by templates, whose disks are built on image ``name``."""
        vms = [v.name for v in self.store.vms() if name in (v.spec.image, v.spec.cdrom)]
        kept = [f"template {t.name}" for t in self.store.templates()
                if (snap := self.store.snapshot(t.snapshot)) and
                name in (snap.spec.image, snap.spec.cdrom)]
        return vms + kept

    def remove_image(self, name: str) -> None:
        self.images.remove(name, self._image_users(name))

    async def receive_image(self, name: str, digest: str, chunks: AsyncIterator[bytes]
                            ) -> dict[str, Any]:
        """Store an image another vmkit host sends (a migration's base image)."""
        archive = await self.portable.receive(chunks)
        try:
            image = await asyncio.to_thread(self.images.receive, name, digest, archive)
        finally:
            shutil.rmtree(archive.parent, ignore_errors=True)
        return describe_image(image)

    # --- VMs: queries ----------------------------------------------------------------

    def record(self, name: str) -> VmRecord:
        rec = self.store.vm(name)
        if rec is None:
            raise NotFoundError(f"no VM named {name!r}; 'vmkit ls' lists them")
        return rec

    def _describe(self, rec: VmRecord) -> dict[str, Any]:
        return {**describe_vm(rec), "snapshot": self.snapshots.label(rec.head),
                "forked_from": self.snapshots.label(rec.base)}

    def list_vms(self) -> list[dict[str, Any]]:
        return [self._describe(r) for r in self.store.vms()]

    def get_vm(self, name: str) -> dict[str, Any]:
        return self._describe(self.record(name))

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

    # --- VMs: lifecycle ---------------------------------------------------------------

    async def create_vm(self, spec: VmSpec) -> dict[str, Any]:
        """Create ``spec`` and boot it; returns when the guest agent answers."""
        if spec.memory_mib > host_memory_mib():
            raise InvalidInputError(f"memory {spec.memory_mib}M is more than this host has "
                                    f"({host_memory_mib()}M)")
        async with self.locks[spec.name]:
            if self.store.vm(spec.name):
                raise ConflictError(f"a VM named {spec.name} already exists; choose another "
                                    f"name or remove it with 'vmkit rm {spec.name}'")
            self.networks.check(spec.attachments())
            boot = self.boot_files(spec)
            if spec.disk_bytes is not None and spec.disk_bytes < boot.rootfs_bytes:
                raise InvalidInputError(
                    f"disk {format_size(spec.disk_bytes)} is smaller than the image "
                    f"{spec.image} ({format_size(boot.rootfs_bytes)}); use at least that")
            spec = with_ssh_port(spec, boot)
            check_ports_free(spec.ports)
            facts = self.host_facts(boot)
            vmp = self.paths.vm(spec.name)
            shutil.rmtree(vmp.dir, ignore_errors=True)  # leftovers of a VM not in the store
            vmp.dir.mkdir(mode=0o700)
            try:
                layer = new_id()
                if boot.rootfs is None:
                    await disks.create_empty(self.paths.disk(layer), boot.rootfs_bytes)
                else:
                    await disks.create_overlay(self.paths.disk(layer), boot.rootfs,
                                               boot.rootfs_format,
                                               spec.disk_bytes or boot.rootfs_bytes)
                rec = self.store.add_vm(spec, random_mac(), layer, creating=True)
                await self.launch(rec, boot, facts)
                self.store.vm_created(spec.name)
            except BaseException:
                await self.discard(spec.name)  # nothing half-created is left behind
                raise
        # Outside the lock: the user may stop or remove the VM while cloud-init runs.
        provisioned = await self._cloud_init(spec.name) if boot.seed else None
        return {**self.get_vm(spec.name), **({"cloud_init": provisioned} if provisioned else {})}

    async def _cloud_init(self, name: str) -> dict[str, Any]:
        """Wait for cloud-init in the new guest to finish: {"status": "done" | "error", ...}.
        A failure is reported, not undone: the VM runs on, for the user to look into."""
        if (machine := self.machines.get(name)) is None:
            return {"status": "error", "detail": "the VM stopped before cloud-init finished"}
        agent = machine.agent
        out = bytearray()
        code: Any = None
        try:
            async with asyncio.timeout(CLOUD_INIT_TIMEOUT):
                async for stream, data in agent.exec_stream(
                        ["cloud-init", "status", "--wait", "--long"]):
                    if isinstance(data, bytes):
                        out += data
                    else:
                        code = data
        except (TimeoutError, VmkitError) as e:
            return {"status": "error", "detail": f"could not follow cloud-init: {e or 'timed out'}"}
        text = out.decode(errors="replace").strip()
        if code == 0:
            return {"status": "done", "detail": ""}
        details = [line.strip() for line in text.splitlines()
                   if line.strip().startswith(("detail:", "errors:", "- ", "status:"))]
        return {"status": "error", "detail": " ".join(details)[-500:] or text[-500:]}

    async def launch(self, rec: VmRecord, boot: BootFiles, facts: HostFacts,
                      resume: Resume | None = None) -> None:
        """Start the VM's QEMU, booting it or resuming a saved state; returns when the guest
        agent answers (or at once for a state restored paused)."""
        name = rec.name
        vmp = self.paths.vm(name)
        argv = build_argv(rec.spec, boot, vmp, facts, rec.mac, self.disk_path(rec),
                          ram=resume.ram if resume else None, incoming=resume is not None,
                          nics=self.networks.plug(rec))
        atomic_write(vmp.launched, json.dumps({"version": 1, "spec": rec.spec.to_json(),
                                               "argv": argv}, indent=1).encode())
        self.store.set_vm_state(name, S.STARTING)
        self._stopping.discard(name)
        machine = await self.start_qemu(rec.spec, argv, vmp, boot, self.disk_path(rec),
                                        ram=resume.ram.path if resume and resume.ram else None,
                                        on_event=self.handler(name))
        self.machines[name] = machine
        self.limit(name, machine.pid)
        self.store.set_vm_state(name, S.STARTING, pid=machine.pid)
        try:
            if name in self._removing:  # 'rm -f' came while QEMU started: boot nothing
                self._stopping.add(name)
                await machine.kill()
            if resume is not None:
                await self._load(machine, resume)
                if resume.paused:
                    self.store.set_vm_state(name, S.PAUSED, pid=machine.pid, started=time.time())
                    return
                await machine.execute("cont")
            if boot.agent:  # an installer CD or an imported disk may have no agent
                await _agent_or_exit(
                    machine, AGENT_TIMEOUT if boot.profile == "tiny" else PC_AGENT_TIMEOUT)
                if resume is not None and not machine.exited.is_set():
                    await identity.apply(machine.agent, resume.identity)
        except VmkitError as e:
            self._stopping.add(name)
            await machine.kill()
            self._raise_if_removed(name)
            raise LaunchError(f"VM {name} did not become ready: {e.message} Last console "
                              f"output: {log_tail(vmp.serial_log, 3) or 'none'}") from e
        if machine.exited.is_set():
            self._raise_if_removed(name)
            raise LaunchError(f"VM {name} stopped while booting: {self.record(name).reason}")
        self.store.set_vm_state(name, S.RUNNING, pid=machine.pid, started=time.time())

    def _raise_if_removed(self, name: str) -> None:
        """A boot that failed because 'rm -f' killed its QEMU fails as a conflict."""
        if name in self._removing:
            raise ConflictError(f"VM {name} was removed while it was booting")

    async def _load(self, machine: Machine, resume: Resume) -> None:
        try:
            await vmstate.load(machine, resume.state, ignore_shared=resume.ram is not None)
        except VmkitError:
            with contextlib.suppress(TimeoutError):  # QEMU exits on a state it cannot load
                await asyncio.wait_for(machine.exited.wait(), 5.0)
            raise LaunchError(f"QEMU could not load the saved state: "
                              f"{log_tail(machine.paths.qemu_log, 2) or 'no message'}") from None

    async def start_qemu(self, spec: VmSpec, argv: list[str], vmp: VmPaths, boot: BootFiles,
                         disk: Path, *, disk_writable: bool = True, ram: Path | None = None,
                         on_event: Any = None) -> Machine:
        """Start the QEMU of ``argv`` for the VM in ``vmp``, jailed where vmkitd can (see
        machine/jail.py) so that it sees only the VM's own files: ``disk`` and the layers
        below it, ``boot``'s kernel, initrd and CD, and ``ram``."""
        await asyncio.to_thread(self.write_media, spec, boot)
        if self.jail is not None:
            files = jail.vm_files(vmp.dir, boot.files(), disk, disk_writable, ram)
            files += [(d, False) for d in jail.switch_dirs(argv) if d != vmp.dir]
            files += jail.program_files(argv)
            layers = [p for p, _ in files if p.parent == self.paths.disks]
            media = [p for p in (boot.seed, boot.efi_vars) if p is not None]
            self.jail.give(vmp.dir, *layers, *([ram] if ram else []), *media)
            argv = self.jail.command(argv, files, *jail.devices(argv), status=vmp.exit_status)
        try:
            return await Machine.launch(argv, vmp, on_event=on_event,
                                        jailed=self.jail is not None)
        except LaunchError as e:
            raise explain_launch_error(e) from e

    def limit(self, name: str, pid: int) -> None:
        """Hold the VM's QEMU to its CPUs and memory (cgroups), where this host allows it."""
        spec = self.record(name).spec
        try:
            self.limits.apply(name, pid, spec.cpus, spec.memory_mib)
        except OSError as e:
            log.warning("VM %s runs without CPU and memory limits: %s", name, e)

    def disk_path(self, rec: VmRecord) -> Path:
        """The VM's writable disk layer."""
        return self.paths.disk(rec.disk)

    def handler(self, name: str) -> Any:
        return lambda event: self._on_event(name, event)

    def _on_event(self, name: str, event: str) -> None:
        rec = self.store.vm(name)
        if rec is None:
            return
        if event == "STOP" and rec.state == S.RUNNING:
            self.store.set_vm_state(name, S.PAUSED, pid=rec.pid, started=rec.started)
        elif event == "RESUME" and rec.state == S.PAUSED:
            self.store.set_vm_state(name, S.RUNNING, pid=rec.pid, started=rec.started)
        elif event == "EXIT":
            machine = self.machines.pop(name, None)
            self.limits.release(name)
            self.networks.unplug(rec)
            if (hub := self._consoles.pop(name, None)) is not None:
                self.spawn(hub.close())
            if name in self._replacing:
                self.store.set_vm_state(name, S.STOPPED)
                return
            requested = name in self._stopping
            self._stopping.discard(name)
            why = machine.shutdown_reason if machine else ""
            if requested or why in ("guest-shutdown", "host-qmp-quit", "host-qmp-system-reset"):
                self.store.set_vm_state(name, S.STOPPED)
            else:
                self.store.set_vm_state(name, S.CRASHED, reason=self._crash_reason(
                    name, self._exit_text(machine)))
            if rec.spec.auto_remove:
                self.spawn(self.discard(name))

    @staticmethod
    def _exit_text(machine: Machine | None) -> str:
        if machine is None:
            return "QEMU exited"
        if machine.shutdown_reason == "guest-reset":
            return "the guest reset itself (a reboot or a kernel panic)"
        if (code := machine.exit_code) is not None:
            return f"QEMU {exit_status_text(code)}"
        return f"QEMU exited; {UNKNOWN_EXIT}" if machine.reattached else "QEMU exited"

    def _crash_reason(self, name: str, what: str) -> str:
        vmp = self.paths.vm(name)
        details = [what]
        if tail := log_tail(vmp.qemu_log, 2):
            details.append(f"QEMU log: {tail}")
        if tail := log_tail(vmp.serial_log, 2):
            details.append(f"console: {tail}")
        return "; ".join(details)

    async def resize_vm(self, name: str, cpus: int | None = None, memory: str | None = None,
                        disk: str | None = None) -> dict[str, Any]:
        """New CPUs, memory and/or a bigger disk for a stopped VM; the tiny guest grows its
        root filesystem to the disk at its next boot."""
        if cpus is None and memory is None and disk is None:
            raise InvalidInputError("nothing to change: give --cpus, --memory and/or --disk")
        async with self.locks[name]:
            rec = self.record(name)
            require("resize", rec.state, name)
            spec = resized(rec.spec, cpus, memory, disk, host_memory_mib())
            top = self.disk_path(rec)
            if disk is not None:
                now = await asyncio.to_thread(disks.virtual_size, top)
                assert spec.disk_bytes is not None
                if spec.disk_bytes < now:
                    raise InvalidInputError(
                        f"disk {disk} is smaller than VM {name}'s disk ({format_size(now)}): "
                        "vmkit grows disks and never shrinks them (that would cut off data)")
                if spec.disk_bytes > now:
                    await disks.grow(top, spec.disk_bytes)
            self.store.set_vm_spec(name, spec)
        return self.get_vm(name)

    async def start_vm(self, name: str) -> dict[str, Any]:
        async with self.locks[name]:
            rec = self.record(name)
            require("start", rec.state, name)
            boot = self.boot_files(rec.spec)
            await self.start(rec, boot, self.host_facts(boot))
        return self.get_vm(name)

    async def start(self, rec: VmRecord, boot: BootFiles, facts: HostFacts,
                    resume: Resume | None = None) -> None:
        """Launch an existing VM; if that fails it is left crashed, with the reason."""
        check_ports_free(rec.spec.ports)
        try:
            await self.launch(rec, boot, facts, resume)
        except BaseException as e:
            if (machine := self.machines.pop(rec.name, None)) is not None:
                self._stopping.add(rec.name)
                await machine.kill()
            reason = e.message if isinstance(e, VmkitError) else "start was interrupted"
            self.store.set_vm_state(rec.name, S.CRASHED, reason=reason)
            raise

    async def replace_process(self, name: str) -> None:
        """Kill the VM's QEMU, if it runs, for a restore that starts another."""
        if (machine := self.machines.get(name)) is not None:
            self._replacing.add(name)
            try:
                await machine.kill()
            finally:
                self._replacing.discard(name)

    async def stop_vm(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        async with self.locks[name]:
            machine = self.live_machine(name, "stop")
            self._stopping.add(name)
            rec = self.record(name)
            self.store.set_vm_state(name, S.STOPPING, pid=rec.pid, started=rec.started)
            await machine.stop(timeout)
        return self._after_exit(rec)

    async def kill_vm(self, name: str) -> dict[str, Any]:
        async with self.locks[name]:
            machine = self.live_machine(name, "kill")
            rec = self.record(name)
            self._stopping.add(name)
            await machine.kill()
        return self._after_exit(rec)

    def _after_exit(self, before: VmRecord) -> dict[str, Any]:
        """The VM as it is now, or as it was at exit if it removed itself (--rm)."""
        if (rec := self.store.vm(before.name)) is not None:
            return self._describe(rec)
        return {**self._describe(before), "state": S.STOPPED.value, "pid": None,
                "reason": "removed when it stopped (auto_remove)"}

    async def restart_vm(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        require("restart", self.record(name).state, name)
        await self.stop_vm(name, timeout)
        return await self.start_vm(name)

    async def pause_vm(self, name: str) -> dict[str, Any]:
        return await self._run_state(name, "pause", "stop", S.PAUSED)

    async def resume_vm(self, name: str) -> dict[str, Any]:
        vm = await self._run_state(name, "resume", "cont", S.RUNNING)
        if (machine := self.machines.get(name)) is not None and machine.agent.connected:
            with contextlib.suppress(AgentError):  # its clock stood still while it was paused
                await machine.agent.set_time()
        return vm

    async def _run_state(self, name: str, action: str, qmp_command: str, state: VmState
                         ) -> dict[str, Any]:
        """Stop or continue the guest's CPUs (QEMU's 'stop'/'cont')."""
        async with self.locks[name]:
            machine = self.live_machine(name, action)
            await machine.execute(qmp_command)
            rec = self.record(name)
            self.store.set_vm_state(name, state, pid=rec.pid, started=rec.started)
        return self.get_vm(name)

    async def remove_vm(self, name: str, force: bool = False) -> None:
        """Remove a stopped VM. ``force``: kill it first if it runs; a create or start booting
        it then fails (_raise_if_removed), and a failed create removes its VM itself."""
        self.record(name)
        self.snapshots.check_vm_removable(name)
        if not force:
            async with self.locks[name]:
                require("remove", self.record(name).state, name)
                await self.discard(name)
            return
        self._removing.add(name)
        try:
            if (machine := self.machines.get(name)) is not None:  # a boot may hold the lock
                self._stopping.add(name)
                await machine.kill()
            async with self.locks[name]:
                if self.has_vm(name):
                    await self.discard(name)
        finally:
            self._removing.discard(name)

    async def discard(self, name: str) -> None:
        if (machine := self.machines.pop(name, None)) is not None:
            self._stopping.add(name)
            await machine.kill()
        rec = self.store.vm(name)
        if rec and (pid := self._qemu_pid(rec)):
            os.kill(pid, signal.SIGKILL)  # a QEMU we lost track of must not outlive its VM
        self.store.remove_vm(name)
        await asyncio.to_thread(shutil.rmtree, self.paths.vm(name).dir, True)
        await self.snapshots.collect_garbage()

    # --- VMs: guest access ----------------------------------------------------------

    async def _agent(self, name: str, action: str) -> GuestAgent:
        machine = self.live_machine(name, action)
        if not machine.agent.connected:
            await machine.agent.connect(timeout=5.0)
        return machine.agent

    async def exec_vm(self, name: str, argv: list[str], stdin: bytes | None = None
                      ) -> AsyncIterator[tuple[str, bytes | int]]:
        if not argv:
            raise InvalidInputError("give a command to run, e.g. vmkit exec NAME -- uname -a")
        agent = await self._agent(name, "exec")
        return agent.exec_stream(argv, stdin)

    async def read_file(self, name: str, path: str) -> AsyncIterator[bytes]:
        agent = await self._agent(name, "copy")
        chunks = agent.read_file(_guest_path(path))
        first = await anext(chunks, b"")  # fail here, before a response has started
        async def rest() -> AsyncIterator[bytes]:
            yield first
            async for c in chunks:
                yield c
        return rest()

    async def write_file(self, name: str, path: str, chunks: AsyncIterator[bytes]) -> int:
        agent = await self._agent(name, "copy")
        return await agent.write_file(_guest_path(path), chunks)

    async def console(self, name: str) -> ConsoleHub:
        self.live_machine(name, "console")
        hub = self._consoles.get(name)
        if hub is None:
            hub = self._consoles[name] = ConsoleHub(self.paths.vm(name).console)
        return hub

    def serial_log(self, name: str) -> Path:
        self.record(name)
        return self.paths.vm(name).serial_log


def _guest_path(path: str) -> str:
    if not path.startswith("/") or "\0" in path:
        raise InvalidInputError(f"guest path {path!r} must be absolute, e.g. NAME:/root/file")
    return path

"""The one path by which a VM comes to run on this host, and by which it starts again.

Create, fork, restore, import and migration arrival all register and launch through
``Launcher.register``; each says only how its disk and memory arrive (``Arrival``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConflictError, InvalidInputError, LaunchError, VmkitError
from ..machine import identity, jail, vmstate
from ..machine.argv import BootFiles, HostFacts, RamFile, build_argv, nic_mac
from ..machine.identity import Identity, random_mac
from ..machine.process import Machine, log_tail
from ..networks.ports import check_ports_free, explain_launch_error, free_port
from ..paths import VmPaths, atomic_write, new_id
from ..spec import PortForward, VmSpec
from ..state import VmState
from ..store import VmRecord
from .boot import BootMedia, host_memory_mib
from .discard import discard
from .layers import DiskLayers
from .registry import Registry
from .watch import Watch


log = logging.getLogger("vmkit.core")
AGENT_TIMEOUT = 60.0  # seconds from QEMU start until the guest agent must answer
KICK_AFTER = 15.0  # seconds of silence after which a tiny guest's vCPUs are woken (_kick)
PC_AGENT_TIMEOUT = 300.0  # the same for a full OS (systemd under TCG takes a minute or more)
S = VmState
MAX_SOCKET_PATH = 107  # bytes of a Unix socket's path (sun_path, less its final NUL)


@dataclass(frozen=True)
class Resume:
    """Launch from a saved state instead of booting: a restore (RAM in ``state``) or a fork
    (``state`` holds only devices; RAM is ``ram``, mapped copy-on-write)."""
    state: Path
    ram: RamFile | None
    paused: bool  # leave it paused, as it was when saved
    identity: Identity  # given to the guest once it runs (empty: only entropy and clock)


# Makes the new VM's writable disk layer at the path it is given.
DiskMaker = Callable[[Path], Awaitable[None]]


@dataclass(frozen=True)
class Arrival:
    """How a new VM's disk and memory come to this host."""
    disk: DiskMaker
    mac: str | None = None  # kept from elsewhere (an import, a migration); else a new one
    base: str | None = None  # the snapshot a fork grows from
    resume: Resume | None = None  # load this saved state instead of booting
    start: bool = True  # False: registered stopped (an import of a stopped VM)
    # QEMU waits, paused, for a migration stream that the caller drives; the VM stays
    # provisional (removed if vmkitd restarts) until ``Launcher.arrived``.
    incoming: bool = False
    conflict: str = ""  # what to tell a user whose name is taken, if not the default


def fresh_identity(spec: VmSpec, mac: str) -> Identity:
    """The identity a copy of a running guest takes on: its own MAC on each NIC, and on
    private networks a DHCP lease of its own."""
    attached = spec.attachments()
    return Identity.new(spec.name, ",".join(nic_mac(mac, i) for i in range(len(attached))),
                        tuple(i for i, n in enumerate(attached) if n not in ("nat", "restricted")))


def with_ssh_port(spec: VmSpec, boot: BootFiles) -> VmSpec:
    """A cloud-init guest runs sshd: forward a free loopback port to it for 'vmkit ssh',
    unless the user forwarded one or the VM has no user-mode NIC to forward through."""
    if boot.seed is None or any(p.guest_port == 22 and p.proto == "tcp" for p in spec.ports) \
            or not {"nat", "restricted"} & set(spec.attachments()):
        return spec
    return replace(spec, ports=(*spec.ports, PortForward(free_port(), 22)))


async def _agent_or_exit(machine: Machine, timeout: float, name: str, kick: bool) -> None:
    """Wait for the guest agent, or for QEMU to exit: a guest that dies while booting is
    reported at once (by the caller), not after the agent's whole timeout. With ``kick``, a
    guest still silent after KICK_AFTER seconds has its vCPUs woken (see _kick)."""
    connect = asyncio.ensure_future(machine.agent.connect(timeout=timeout))
    exited = asyncio.ensure_future(machine.exited.wait())
    kicks = asyncio.ensure_future(_kick(machine, name) if kick else asyncio.Event().wait())
    try:
        await asyncio.wait((connect, exited, kicks), return_when=asyncio.FIRST_COMPLETED)
        if connect.done():
            connect.result()  # raises the agent's error
    finally:
        for task in (connect, exited, kicks):
            task.cancel()


async def _kick(machine: Machine, name: str) -> None:
    """Under TCG on a loaded host, a tiny guest's boot (2-5 s, 15 s at worst when busy) now and
    then stops for good with every vCPU halted in the idle loop: a wake-up lost between
    QEMU's timer and its halted vCPU. Pausing and resuming the vCPUs makes each look again at
    what is pending; a guest that was only slow loses nothing by it."""
    while True:
        await asyncio.sleep(KICK_AFTER)
        await _log_where_the_cpus_are(name, machine, f"silent after {KICK_AFTER:.0f} s; "
                                                     "waking them")
        with contextlib.suppress(VmkitError):
            await machine.execute("stop")
            await machine.execute("cont")


async def _log_where_the_cpus_are(name: str, machine: Machine, what: str) -> None:
    """Log each vCPU's instruction pointer of a guest that does not answer, for whoever
    debugs a boot that hung (a quiet kernel prints nothing on the console to say where)."""
    with contextlib.suppress(Exception):  # a diagnosis, never a second failure
        registers = await asyncio.wait_for(machine.execute(
            "human-monitor-command", {"command-line": "info registers -a"}), 2.0)
        rips = [line.split()[0] for line in str(registers).splitlines()
                if line.startswith("RIP=")]
        log.warning("VM %s: %s; its vCPUs are at %s", name, what, ", ".join(rips))


def _check_socket_paths(vmp: VmPaths, home: Path) -> None:
    """QEMU's sockets live in the VM's directory; a Unix socket's path has at most 107
    bytes. Say so plainly, rather than let QEMU fail on it."""
    longest = max((vmp.qmp, vmp.agent, vmp.console, vmp.vnc), key=lambda p: len(bytes(p)))
    if len(bytes(longest)) > MAX_SOCKET_PATH:
        raise InvalidInputError(
            f"the socket {longest} would have a path of {len(bytes(longest))} bytes, more "
            f"than the {MAX_SOCKET_PATH} a Unix socket allows: use a shorter VMKIT_HOME than "
            f"{home} ({len(bytes(home))} bytes) or a shorter VM name")


class Launcher:
    def __init__(self, reg: Registry, boot: BootMedia, layers: DiskLayers, watch: Watch
                 ) -> None:
        self.core = reg
        self.boot = boot
        self.layers = layers
        self.watch = watch

    # --- registering a new VM ------------------------------------------------------------

    async def register(self, spec: VmSpec, arrival: Arrival) -> tuple[VmRecord, BootFiles]:
        """Record ``spec`` as a new VM whose disk and memory come as ``arrival`` says, and
        launch it (unless ``arrival.start`` is False). Returns when it runs (the agent
        answers), or, for an incoming migration, when QEMU waits for it. On any failure
        nothing of it is left behind."""
        core = self.core
        if spec.memory_mib > (host := host_memory_mib()):
            raise InvalidInputError(f"memory {spec.memory_mib}M is more than this host has "
                                    f"({host}M)")
        async with core.locks[spec.name]:
            if core.store.vm(spec.name):
                raise ConflictError(arrival.conflict or (
                    f"a VM named {spec.name} already exists; choose another name or remove "
                    f"it with 'vmkit rm {spec.name}'"))
            core.networks.check(spec.attachments())
            boot = self.boot.files(spec)
            if not arrival.incoming:  # a migration's caller checks its ports its own way
                spec = with_ssh_port(spec, boot)
                if arrival.start:
                    check_ports_free(spec.ports)
            facts = self.boot.facts(boot)
            vmp = core.paths.vm(spec.name)
            shutil.rmtree(vmp.dir, ignore_errors=True)  # leftovers of a VM not in the store
            vmp.dir.mkdir(mode=0o700)
            if arrival.incoming:
                vmp.arriving.touch()
            try:
                layer = new_id()
                await arrival.disk(core.paths.disk(layer))
                rec = core.store.add_vm(spec, arrival.mac or random_mac(), layer,
                                        base=arrival.base, creating=not arrival.incoming)
                if arrival.incoming:
                    await self.launch(rec, boot, facts, incoming=True)
                    return rec, boot
                if arrival.start:
                    await self.launch(rec, boot, facts, arrival.resume)
                core.store.vm_created(spec.name)
            except BaseException:
                await discard(core, self.layers, spec.name)  # nothing half-made is left behind
                raise
        return rec, boot

    def arrived(self, name: str, machine: Machine) -> None:
        """An incoming VM runs here now, for good."""
        self.core.paths.vm(name).arriving.unlink(missing_ok=True)
        self.core.store.set_vm_state(name, S.RUNNING, pid=machine.pid, started=time.time())

    # --- launching ---------------------------------------------------------------------------

    async def start(self, rec: VmRecord, resume: Resume | None = None) -> None:
        """Launch an existing VM; if that fails it is left crashed, with the reason."""
        core = self.core
        boot = self.boot.files(rec.spec)
        check_ports_free(rec.spec.ports)
        try:
            await self.launch(rec, boot, self.boot.facts(boot), resume)
        except BaseException as e:
            if (machine := core.machines.pop(rec.name, None)) is not None:
                core.stopping.add(rec.name)
                await machine.kill()
            reason = e.message if isinstance(e, VmkitError) else "start was interrupted"
            core.store.set_vm_state(rec.name, S.CRASHED, reason=reason)
            raise

    async def launch(self, rec: VmRecord, boot: BootFiles, facts: HostFacts,
                     resume: Resume | None = None, incoming: bool = False) -> None:
        """Start the VM's QEMU, booting it or resuming a saved state; returns when the guest
        agent answers (or at once for a state restored paused, or an ``incoming`` VM, whose
        QEMU waits paused for a migration)."""
        core = self.core
        name = rec.name
        vmp = core.paths.vm(name)
        argv = build_argv(rec.spec, boot, vmp, facts, rec.mac, core.disk_path(rec),
                          ram=resume.ram if resume else None,
                          incoming=resume is not None or incoming,
                          nics=core.networks.plug(rec)) + (["-S"] if incoming else [])
        atomic_write(vmp.launched, json.dumps({"version": 1, "spec": rec.spec.to_json(),
                                               "argv": argv}, indent=1).encode())
        core.store.set_vm_state(name, S.STARTING)
        core.stopping.discard(name)
        machine = await self.start_qemu(rec.spec, argv, vmp, boot, core.disk_path(rec),
                                        ram=resume.ram.path if resume and resume.ram else None,
                                        on_event=self.watch.handler(name))
        core.machines[name] = machine
        self.limit(name, machine.pid)
        core.store.set_vm_state(name, S.STARTING, pid=machine.pid)
        if incoming:
            return
        try:
            if name in core.removing:  # 'rm -f' came while QEMU started: boot nothing
                core.stopping.add(name)
                await machine.kill()
            if resume is not None:
                await self._load(machine, resume)
                if resume.paused:
                    core.store.set_vm_state(name, S.PAUSED, pid=machine.pid, started=time.time())
                    return
                await machine.execute("cont")
            if boot.agent:  # an installer CD or an imported disk may have no agent
                tiny = boot.profile == "tiny"
                await _agent_or_exit(machine, AGENT_TIMEOUT if tiny else PC_AGENT_TIMEOUT,
                                     name, kick=tiny)
                if resume is not None and not machine.exited.is_set():
                    await identity.apply(machine.agent, resume.identity)
        except VmkitError as e:
            await _log_where_the_cpus_are(name, machine, "did not become ready")
            core.stopping.add(name)
            await machine.kill()
            self._raise_if_removed(name)
            raise LaunchError(f"VM {name} did not become ready: {e.message} Last console "
                              f"output: {log_tail(vmp.serial_log, 3) or 'none'}") from e
        if machine.exited.is_set():
            self._raise_if_removed(name)
            raise LaunchError(f"VM {name} stopped while booting: {core.record(name).reason}")
        core.store.set_vm_state(name, S.RUNNING, pid=machine.pid, started=time.time())

    def _raise_if_removed(self, name: str) -> None:
        """A boot that failed because 'rm -f' killed its QEMU fails as a conflict."""
        if name in self.core.removing:
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
                         on_event: Callable[[str], None] | None = None) -> Machine:
        """Start the QEMU of ``argv`` for the VM in ``vmp``, jailed where vmkitd can (see
        machine/jail.py) so that it sees only the VM's own files: ``disk`` and the layers
        below it, ``boot``'s kernel, initrd and CD, and ``ram``."""
        core = self.core
        _check_socket_paths(vmp, core.paths.root)
        await asyncio.to_thread(self.boot.write, spec, boot)
        if core.jail is not None:
            files = jail.vm_files(vmp.dir, boot.files(), disk, disk_writable, ram)
            files += [(d, False) for d in jail.switch_dirs(argv) if d != vmp.dir]
            files += jail.program_files(argv)
            layers = [p for p, _ in files if p.parent == core.paths.disks]
            media = [p for p in (boot.seed, boot.efi_vars) if p is not None]
            core.jail.give(vmp.dir, *layers, *([ram] if ram else []), *media)
            argv = core.jail.command(argv, files, *jail.devices(argv), status=vmp.exit_status)
        try:
            return await Machine.launch(argv, vmp, on_event=on_event,
                                        jailed=core.jail is not None)
        except LaunchError as e:
            raise explain_launch_error(e) from e

    def limit(self, name: str, pid: int) -> None:
        """Hold the VM's QEMU to its CPUs and memory (cgroups), where this host allows it."""
        spec = self.core.record(name).spec
        try:
            self.core.limits.apply(name, pid, spec.cpus, spec.memory_mib)
        except OSError as e:
            log.warning("VM %s runs without CPU and memory limits: %s", name, e)

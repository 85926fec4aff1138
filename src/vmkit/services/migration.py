"""Live migration: move a running VM to another vmkit host while its guest keeps running.

The source daemon drives it; the destination daemon answers through its API (token-guarded):

1. the destination creates the VM with an empty disk of the same size and starts QEMU waiting
   for the state (``-incoming``, paused after it: ``-S``), exports that disk over NBD and
   listens for the migration stream (``POST /v1/migrations``);
2. the source mirrors its disk, the whole backing chain flattened, into the NBD export
   (``blockdev-mirror``, sync=full) until the copy is in step and stays so as the guest writes;
3. the source migrates RAM and devices (QEMU pre-copy, or ``--postcopy``), then stops the guest;
   the mirror ends (``block-job-cancel`` once in step: the target keeps every write);
4. where the QEMU is not trusted to move a busy guest whole (before 10.0, under TCG: 7.2
   damages about one guest in a hundred moves), both sides hash the paused guest's memory and
   CPU state (machine/memory.py, ``POST /v1/migrations/NAME/digest``); any difference and the
   guest never runs at the destination;
5. the destination stops its NBD server, resumes the guest, sets its clock, and watches it for
   a while (``POST /v1/migrations/NAME/finish``): its QEMU alive, its kernel log free of panics
   and oopses (kernel_log.py), its agent answering. Only then does the source forget its copy,
   which it kept paused all along.

Any failure before step 5 ends leaves the VM running on the source, as it was, and the
destination removes everything it made (``DELETE /v1/migrations/NAME``). A guest that fails
during the watch is killed at the destination and the source's paused copy resumes: the
seconds the guest ran at the destination are lost, the VM is not; the error quotes the guest
kernel's own message. If the source goes
silent instead (its daemon died), the destination removes the arrival once nothing has moved
for VMKIT_ARRIVAL_IDLE_TIMEOUT seconds, or when it restarts; the source's next daemon undoes
the half-done migration and the guest runs on there. An arrival whose QEMU dies is removed at
once.

The NBD export and the migration stream are plain TCP on the destination's API address, open
only for the migration, and not encrypted: use this between hosts on a trusted network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from .. import hosts
from ..core.boot import host_memory_mib
from ..core.core import Core
from ..core.launch import Arrival
from ..errors import (AgentError, ConflictError, HostError, InvalidInputError, MigrationError,
                      NoSpaceError, NotFoundError, VmkitError)
from ..images.store import FILES
from ..images.transfer import tar_stream
from ..machine import disks, jail, kernel_log, memory, qemu
from ..machine.process import Machine, log_tail
from ..networks.ports import check_ports_free, free_port
from ..paths import open_nofollow
from ..spec import PortForward, VmSpec, check_spec, validate_name, with_ports
from ..state import VmState, require
from ..store import Operation, VmRecord

log = logging.getLogger("vmkit.migration")
S = VmState
EXPORT = "disk0"
MIRROR_JOB, MIRROR_NODE = "vmkit-migrate", "vmkit-migrate-target"
PEER_TIMEOUT = 120.0  # seconds for the destination to answer a step
AGENT_WAIT = 10.0  # seconds for the guest to answer at the destination after the switch
# How long the destination watches the moved guest before the source lets go of its paused
# copy. bench/migrate_watch.py: of three churning tiny guests QEMU 7.2 damaged, two printed
# a kernel BUG within a second of the switch and one never answered; a compiling Debian guest
# has been seen to fail about 10 s after. VMKIT_MIGRATION_WATCH (seconds) or ``watch``.
WATCH_ENV, WATCH_DEFAULT = "VMKIT_MIGRATION_WATCH", 30.0
# Check the guest's memory before it runs at the destination: on, off or auto (on where the
# QEMU is not trusted: qemu.TRUSTED_TCG_MIGRATION).
VERIFY_ENV = "VMKIT_MIGRATION_VERIFY"
# An arrival with no progress (disk written, migration state changed) for this long was
# abandoned by its source: the destination removes it.
IDLE_ENV, IDLE_DEFAULT = "VMKIT_ARRIVAL_IDLE_TIMEOUT", 600.0


@dataclass(frozen=True)
class Peer:
    url: str
    token: str
    ca: str | None = None


class Migrations:
    def __init__(self, core: Core) -> None:
        self.core = core
        core.hooks.reattach.append(self.recover)
        self._cancel: dict[str, asyncio.Event] = {}  # source side: migrations in progress
        self._arriving: set[str] = set()  # destination side
        self._finishing: dict[str, asyncio.Event] = {}  # arrivals being watched: set to stop

    # --- destination side ----------------------------------------------------------------

    async def accept(self, sent: Any, mac: str, disk_bytes: int, disk_used: int,
                     theirs: str, address: str, postcopy: bool = False) -> dict[str, Any]:
        """Make the VM of the spec the source ``sent`` here (checked as a user's), waiting for
        its disk (NBD) and state (migration stream) at ``address``."""
        spec = check_spec(sent, host_memory_mib())
        core = self.core
        ours = await asyncio.to_thread(qemu.current)
        if not ours.loads_states_of(theirs):
            raise ConflictError(f"incompatible QEMU versions: {theirs} there, {ours.version} "
                                "here; migrate between hosts with the same QEMU release")
        if postcopy and core.jail and not jail.userfaultfd_allowed():
            raise ConflictError(
                "post-copy needs userfaultfd, which this host keeps from unprivileged "
                "users such as the sandboxed QEMU's (sysctl vm.unprivileged_userfaultfd=0); "
                "migrate without --postcopy, or allow it on this host with "
                "'sysctl vm.unprivileged_userfaultfd=1'")
        free = shutil.disk_usage(core.paths.root).free
        needed = disk_used + (spec.memory_mib << 20) + (256 << 20)
        if free < needed:
            raise NoSpaceError(f"this host has {free >> 20} MiB free in VMKIT_HOME; the VM "
                               f"needs about {needed >> 20} MiB")
        check_ports_free(spec.ports, f"give VM {spec.name} other forwards on the "
                         "destination with 'vmkit migrate -p' (they replace its own)")

        async def empty_disk(path: Path) -> None:  # filled over NBD
            await disks.create_empty(path, disk_bytes)

        rec, _ = await core.launcher.register(spec, Arrival(
            empty_disk, mac, incoming=True,
            conflict=f"a VM named {spec.name} already exists on this host"))
        machine = core.machines[spec.name]
        try:
            nbd_port, stream_port = await self._listen(machine, address, postcopy)
        except BaseException:
            await core.vms.discard(spec.name)
            raise
        self._arriving.add(spec.name)
        core.spawn(self._watch(spec.name, machine, core.disk_path(rec)))
        return {"name": rec.name, "address": address, "nbd_port": nbd_port,
                "migration_port": stream_port}

    @staticmethod
    async def _listen(machine: Machine, address: str, postcopy: bool) -> tuple[int, int]:
        """Export the arriving VM's empty disk over NBD and wait for its state; returns the
        two ports."""
        node = next(d["inserted"]["node-name"] for d in await machine.execute(
            "query-block") if d["device"] == "disk0")
        nbd_port, stream_port = free_port(address), free_port(address)
        await machine.execute("nbd-server-start", {"addr": {
            "type": "inet", "data": {"host": address, "port": str(nbd_port)}}})
        await machine.execute("block-export-add", {
            "type": "nbd", "id": EXPORT, "node-name": node, "name": EXPORT, "writable": True})
        if postcopy:  # both ends must agree before the stream starts
            await machine.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": "postcopy-ram", "state": True}]})
        await machine.execute("migrate-incoming",
                              {"uri": f"tcp:{_host_port(address, stream_port)}"})
        return nbd_port, stream_port

    async def digest(self, name: str) -> str:
        """The arrived guest's memory digest, before it ever runs here."""
        machine = self._arrival(name)
        await self._arrived(machine)
        return await memory.digest(machine)

    async def _arrived(self, machine: Machine) -> None:
        while (status := await machine.status()) == "inmigrate":
            await asyncio.sleep(0.005)
        if status != "paused":
            raise HostError(f"the migration did not complete here (QEMU is {status})")

    async def finish(self, name: str, watch: float = WATCH_DEFAULT) -> dict[str, Any]:
        """The state has arrived: stop exporting the disk, resume the guest, set its clock,
        and watch it for ``watch`` seconds; the guest is removed here if it fails."""
        core = self.core
        machine = self._arrival(name)
        self._arriving.discard(name)  # no longer idle: the idle watch (_watch) lets go of it
        stop = self._finishing[name] = asyncio.Event()
        try:
            await self._arrived(machine)
            await machine.execute("block-export-del", {"id": EXPORT, "mode": "hard"})
            await machine.execute("nbd-server-stop")
            console = core.paths.vm(name).serial_log
            seen = console.stat().st_size if console.exists() else 0
            await machine.execute("cont")
            agent = core.boot.files(core.record(name).spec).agent
            await _watch_guest(machine, console, seen, agent, watch, stop)
        except BaseException as e:
            with contextlib.suppress(Exception):
                log.warning("VM %s did not resume here (%s); QEMU is %s; console: %s", name, e,
                            await machine.status(), log_tail(core.paths.vm(name).serial_log))
            await core.vms.discard(name)
            raise
        finally:
            self._finishing.pop(name, None)
        core.launcher.arrived(name, machine)
        return core.get_vm(name)

    async def _watch(self, name: str, machine: Machine, disk: Path) -> None:
        """Remove an arrival that its source abandoned (its daemon died, or the link): when
        its QEMU exits, or when nothing has moved for a while."""
        idle_limit = float(os.environ.get(IDLE_ENV, IDLE_DEFAULT))
        seen: tuple[Any, ...] = ()
        last_change = time.monotonic()
        while name in self._arriving:
            with contextlib.suppress(VmkitError):
                status = (await machine.execute("query-migrate")).get("status")
                now = (disks.allocated(disk), status, machine.exited.is_set())
                # A memory stream coming in is progress even when the disk is done.
                if now != seen or status in ("active", "postcopy-active", "device"):
                    seen, last_change = now, time.monotonic()
            if machine.exited.is_set() or time.monotonic() - last_change > idle_limit:
                why = "its QEMU exited" if machine.exited.is_set() else "its source left it"
                log.warning("removing VM %s, which was arriving by migration: %s", name, why)
                with contextlib.suppress(NotFoundError):  # the source aborted it meanwhile
                    await self.abort(name)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(machine.exited.wait(), 1.0)

    async def recover(self, rec: VmRecord, machine: Machine) -> None:
        """After a daemon restart: a VM that was leaving keeps running here, its migration
        undone."""
        if any(j["device"] == MIRROR_JOB for j in await machine.execute("query-block-jobs")):
            await self._undo(machine)
        with contextlib.suppress(VmkitError):  # the link to a destination that gave up
            await machine.execute("blockdev-del", {"node-name": MIRROR_NODE})

    async def abort(self, name: str) -> None:
        """Remove a VM arriving here: its source gave up on the move, or its QEMU died. One
        that already runs here under watch (finish) is stopped and removed before this
        returns, so that the source resumes its copy only once this one is gone."""
        if (stop := self._finishing.get(name)) is not None:
            stop.set()
            while name in self._finishing:
                await asyncio.sleep(0.05)
            return
        async with self.core.locks[name]:  # the source's and _watch's: the later one waits
            if name not in self._arriving:
                raise NotFoundError(f"no VM {name!r} is arriving by migration here")
            self._arriving.discard(name)
            await self.core.vms.discard(name)

    def _arrival(self, name: str) -> Machine:
        machine = self.core.machines.get(name)
        if name not in self._arriving or machine is None:
            raise NotFoundError(f"no VM {name!r} is arriving by migration here")
        return machine

    # --- source side ----------------------------------------------------------------------

    def peer(self, host: str | None = None, url: str | None = None, token: str | None = None,
             ca: str | None = None) -> Peer:
        """The destination: the ``host`` registered here, or the one at ``url`` with
        ``token`` (and ``ca`` to trust for its TLS)."""
        if host is not None:
            known = hosts.get(self.core.paths, validate_name(host, "host"))
            return Peer(known.url, known.token, known.ca)
        if url and token:
            return Peer(hosts.check_url(url), token, ca)
        raise InvalidInputError("give the destination's url and token, or the name of a "
                                "registered host ('vmkit host ls')")

    def start(self, name: str, peer: Peer, postcopy: bool = False, verify: bool | None = None,
              watch: float | None = None, ports: list[str] | None = None) -> dict[str, Any]:
        """Begin moving ``name`` to ``peer`` in the background; returns the operation.
        ``verify``: compare the guest's memory on both sides before it runs there (None: where
        the QEMU is not trusted, see should_verify); ``watch``: seconds the destination
        watches the guest before the source lets go of its copy; ``ports``: port forwards
        the VM has there instead of its own (None: the same), which a destination on this
        same host needs: until the switch, this QEMU holds the VM's host ports."""
        core = self.core
        rec = core.record(name)
        require("migrate", rec.state, name)
        if name in self._cancel:
            raise ConflictError(f"VM {name} is already migrating; cancel it with "
                                f"'vmkit migrate --cancel {name}'")
        if core.store.snapshots(name):
            raise InvalidInputError(f"VM {name} has snapshots, which cannot move with it yet; "
                                    "remove them ('vmkit snapshot rm') before migrating")
        checks = Checks(should_verify(verify, core.boot.facts(core.boot.files(rec.spec)).accel),
                        watch_seconds(watch))
        forwards = None if ports is None else with_ports(rec.spec, ports).ports
        op = core.store.add_operation("migrate", name)
        self._cancel[name] = asyncio.Event()
        core.spawn(self._run(name, peer, postcopy, checks, op, forwards))
        return core.operation(op.id)

    def cancel(self, name: str) -> None:
        self.core.record(name)
        if name not in self._cancel:
            raise NotFoundError(f"VM {name} is not migrating")
        self._cancel[name].set()

    async def _run(self, name: str, peer: Peer, postcopy: bool, checks: Checks,
                   op: Operation, ports: tuple[PortForward, ...] | None) -> None:
        store = self.core.store
        started = time.monotonic()

        def progress(fraction: float, message: str) -> None:
            store.update_operation(op.id, progress=fraction, message=message)

        try:
            async with self.core.locks[name]:
                info, disk_s, check_s = await self._move(name, peer, postcopy, checks, progress,
                                                         ports)
            total = time.monotonic() - started
            checked = f", memory checked in {check_s * 1000:.0f} ms" if check_s else ""
            store.update_operation(op.id, state="succeeded", progress=1.0, message=(
                f"moved to {peer.url} in {total:.2f} s (disk {disk_s:.2f} s, memory "
                f"{info.get('total-time', 0) / 1000:.2f} s); downtime {info.get('downtime', 0)} ms"
                f"{checked}; healthy there for {checks.watch:.0f} s"))
        except Exception as e:  # recorded on the operation for the client to show
            msg = e.message if isinstance(e, VmkitError) else f"{type(e).__name__}: {e}"
            store.update_operation(op.id, state="failed", progress=1.0,
                                   message="migration failed; the VM runs here as before",
                                   error=msg)
        finally:
            self._cancel.pop(name, None)

    async def _move(self, name: str, peer: Peer, postcopy: bool, checks: Checks, progress: Any,
                    ports: tuple[PortForward, ...] | None) -> tuple[dict[str, Any], float, float]:
        """Returns QEMU's migration info (total-time, downtime: ms), how long the disk copy
        took and how long the memory check (s)."""
        core = self.core
        rec = core.record(name)
        require("migrate", rec.state, name)
        machine = core.machines[name]
        spec = rec.spec if ports is None else replace(rec.spec, ports=ports)
        size = disks.virtual_size(core.disk_path(rec))
        async with httpx.AsyncClient(base_url=peer.url.rstrip("/") + "/v1",
                                     headers={"authorization": f"Bearer {peer.token}"},
                                     verify=peer.ca or True, timeout=PEER_TIMEOUT) as remote:
            await self._ship_image(rec.spec, remote, peer, progress)
            progress(0.0, "preparing the destination")
            there = await _call(remote, "POST", "/migrations", peer, json={
                "spec": spec.to_json(), "mac": rec.mac, "disk_bytes": size,
                "disk_used": disks.chain_allocated(core.disk_path(rec)),
                "qemu": (await asyncio.to_thread(qemu.current)).version,
                "postcopy": postcopy})
            check_s = 0.0
            try:
                disk_s = await self._copy(name, machine, there, size, postcopy, progress)
                if checks.verify and not postcopy:  # post-copy: the guest ran there already
                    progress(0.96, "comparing the guest's memory on both sides")
                    check_s = await _compare_memory(name, machine, remote, peer)
                progress(0.97, f"running the VM on the destination; watching it for "
                               f"{checks.watch:.0f} s before this copy goes")
                await _call(remote, "POST", f"/migrations/{name}/finish", peer,
                            json={"watch": checks.watch}, timeout=PEER_TIMEOUT + checks.watch)
            except BaseException:
                with contextlib.suppress(Exception):  # there first: the guest never runs twice
                    await _call(remote, "DELETE", f"/migrations/{name}", peer,
                                timeout=AGENT_WAIT + 10)
                await self._undo(machine)
                raise
        info = await machine.execute("query-migrate")
        await core.vms.discard(name)  # it runs there now, and has proven healthy: this copy goes
        return info, disk_s, check_s

    async def _ship_image(self, spec: VmSpec, remote: httpx.AsyncClient, peer: Peer,
                          progress: Any) -> None:
        """Send the VM's base image to a destination that lacks it (one that has an image
        of that name keeps its own: the disk moves whole, its chain flattened)."""
        if spec.image is None:
            return
        try:
            await _call(remote, "GET", f"/images/{spec.image}", peer)
            return
        except NotFoundError:
            pass
        image = self.core.images.get(spec.image)
        files = image.meta.get("files", FILES)
        progress(0.0, f"sending image {spec.image} ({image.size >> 20} MiB) to the destination")
        await _call(remote, "POST", f"/images/{spec.image}/receive", peer,
                    params={"digest": image.digest},
                    content=tar_stream(self.core.images.verified(image), files,
                                       {"kind": image.kind, "meta": image.meta}),
                    headers={"content-type": "application/octet-stream"},
                    timeout=httpx.Timeout(PEER_TIMEOUT, write=None))

    async def _copy(self, name: str, machine: Machine, there: dict[str, Any], size: int,
                    postcopy: bool, progress: Any) -> float:
        """Disk, then memory; returns how long the disk took to get in step."""
        cancel = self._cancel[name]
        started = time.monotonic()
        address = there["address"]
        await machine.execute("blockdev-add", {
            "driver": "nbd", "node-name": MIRROR_NODE, "export": EXPORT,
            "server": {"type": "inet", "host": address, "port": str(there["nbd_port"])}})
        await machine.execute("blockdev-mirror", {
            "job-id": MIRROR_JOB, "device": "disk0", "target": MIRROR_NODE, "sync": "full"})
        while True:  # the disk first: until the copy is in step with the guest's writes
            job = next((j for j in await machine.execute("query-block-jobs")
                        if j["device"] == MIRROR_JOB), None)
            if job is None:
                raise HostError("the disk copy stopped; see the VM's QEMU log")
            if job["ready"]:
                break
            _check(cancel)
            done = job["offset"] / max(job["len"], 1)
            progress(0.6 * done, f"copying the disk: {job['offset'] >> 20} of "
                                 f"{job['len'] >> 20} MiB")
            await asyncio.sleep(0.01)
        disk_s = time.monotonic() - started
        await machine.execute("migrate-set-capabilities", {"capabilities": [
            {"capability": "postcopy-ram", "state": postcopy}]})
        await machine.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        await machine.execute("migrate", {
            "uri": f"tcp:{_host_port(address, there['migration_port'])}"})
        if postcopy:
            await machine.execute("migrate-start-postcopy")
        while True:  # then memory
            info = await machine.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise HostError(f"the memory copy failed: {info.get('error-desc', status)}")
            _check(cancel)
            ram = info.get("ram", {})
            progress(0.6 + 0.35 * _fraction(ram), (
                f"copying memory: {ram.get('transferred', 0) >> 20} MiB sent, "
                f"{ram.get('remaining', 0) >> 20} MiB left, "
                f"{ram.get('mbps', 0):.0f} Mbit/s"))
            await asyncio.sleep(0.02)
        # The guest is stopped here and the mirror in step: ending it keeps the copy whole.
        await machine.execute("block-job-cancel", {"device": MIRROR_JOB})
        while any(j["device"] == MIRROR_JOB for j in await machine.execute("query-block-jobs")):
            await asyncio.sleep(0.005)
        await machine.execute("blockdev-del", {"node-name": MIRROR_NODE})  # ends the NBD link
        return disk_s

    async def _undo(self, machine: Machine) -> None:
        """Back to running here, as before the migration began."""
        if machine.exited.is_set():
            return
        with contextlib.suppress(VmkitError):
            await machine.execute("migrate_cancel")
        with contextlib.suppress(VmkitError):
            await machine.execute("block-job-cancel", {"device": MIRROR_JOB, "force": True})
        for _ in range(500):
            with contextlib.suppress(VmkitError):
                info = await machine.execute("query-migrate")
                jobs = await machine.execute("query-block-jobs")
                if info.get("status") not in ("active", "setup", "cancelling", "device",
                                              "pre-switchover") and not jobs:
                    break
            await asyncio.sleep(0.01)
        with contextlib.suppress(VmkitError):
            await machine.execute("blockdev-del", {"node-name": MIRROR_NODE})
        with contextlib.suppress(VmkitError):
            if await machine.status() != "running":
                await machine.execute("cont")
                if machine.agent.connected:  # it stood still while the move was tried
                    await machine.agent.set_time()


async def _watch_guest(machine: Machine, console: Path, seen: int, agent: bool,
                       seconds: float, stop: asyncio.Event) -> None:
    """The guest has just been resumed here. Raise MigrationError if it fails within
    ``seconds``: its QEMU exits, its kernel reports a failure on the console (after byte
    ``seen``), or its ``agent`` does not answer; or if the source calls the move off
    (``stop``). Its clock is set once the agent answers."""
    switched = time.monotonic()

    def failed(why: str) -> MigrationError:
        return MigrationError(f"the guest failed at the destination "
                              f"{time.monotonic() - switched:.1f} s after the switch: {why}")

    def kernel_failure() -> str | None:
        with contextlib.suppress(OSError), open_nofollow(console) as f:
            f.seek(seen)
            return kernel_log.failure(f.read().decode(errors="replace"))
        return None

    if agent:
        try:  # not long: until it answers (or fails) the guest is stopped at the source too
            await machine.agent.connect(timeout=AGENT_WAIT)
            await machine.agent.set_time()
        except AgentError as e:
            raise failed(repr(why) if (why := kernel_failure()) else e.message) from None
    while True:
        if stop.is_set():
            raise MigrationError("the source called the move off; the guest runs there")
        if why := kernel_failure():
            raise failed(repr(why))
        if machine.exited.is_set() or machine.shutdown_reason == "guest-reset":
            raise failed(f"its QEMU stopped; console: {log_tail(console, 3) or 'nothing'}")
        if machine.agent.connected and not await machine.agent_answers(timeout=5.0):
            raise failed("its agent stopped answering")
        if time.monotonic() - switched >= seconds:
            return
        await asyncio.sleep(0.5)


@dataclass(frozen=True)
class Checks:
    """What proves a move safe before the source lets go of its copy."""
    verify: bool  # compare the guest's memory on both sides before it runs there
    watch: float  # seconds the destination watches the running guest


def should_verify(asked: bool | None, accel: str) -> bool:
    """Whether to compare memory: as asked, else as VMKIT_MIGRATION_VERIFY says (on, off),
    else (auto) where this QEMU is not trusted to move a busy guest whole under TCG."""
    if asked is not None:
        return asked
    setting = os.environ.get(VERIFY_ENV, "auto")
    if setting in ("on", "off"):
        return setting == "on"
    return accel == "tcg" and qemu.current().release < qemu.TRUSTED_TCG_MIGRATION


def watch_seconds(asked: float | None) -> float:
    seconds = asked if asked is not None else float(os.environ.get(WATCH_ENV, WATCH_DEFAULT))
    if not 0 <= seconds <= 600:
        raise InvalidInputError(f"watch {seconds:g} s is out of range: use 0 to 600 seconds")
    return seconds


async def _compare_memory(name: str, machine: Machine, remote: httpx.AsyncClient,
                          peer: Peer) -> float:
    """Hash the guest's memory here (paused after the move) and there (paused before it
    runs); raise MigrationError if they differ. Returns the seconds it took."""
    started = time.monotonic()
    mine, theirs = await asyncio.gather(
        memory.digest(machine), _call(remote, "POST", f"/migrations/{name}/digest", peer))
    if mine != theirs["digest"]:
        raise MigrationError(
            f"the guest's memory arrived damaged at {peer.url} (QEMU {qemu.current().version} "
            "lost or changed pages while copying); it never ran there. Try again, or install "
            "QEMU 10 (see README)")
    return time.monotonic() - started


def _check(cancel: asyncio.Event) -> None:
    if cancel.is_set():
        raise VmkitError("the migration was cancelled; the VM runs here as before")


def _fraction(ram: dict[str, Any]) -> float:
    sent, left = ram.get("transferred", 0), ram.get("remaining", 0)
    return sent / (sent + left) if sent + left else 0.0


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def _call(remote: httpx.AsyncClient, method: str, path: str, peer: Peer,
                **kw: Any) -> Any:
    """One request to the destination; its errors come back as vmkit's errors."""
    try:
        response = await remote.request(method, path, **kw)
    except httpx.TransportError as e:
        raise HostError(f"cannot reach the destination {peer.url}: {e or type(e).__name__}"
                        ) from None
    return hosts.answer(response, f"the destination {peer.url} refused")

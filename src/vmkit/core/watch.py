"""Following each VM's QEMU: its QMP events keep the VM's state true, and its exit says
whether it stopped as asked or crashed, and why; a VM whose restart policy says so is then
started again (docker's --restart), after a back-off that grows while it keeps failing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ..errors import VmkitError
from ..machine.process import Machine, exit_status_text, log_tail
from ..state import VmState
from ..store import VmRecord
from .discard import discard
from .layers import DiskLayers
from .registry import Registry

# How an unjailed QEMU ended is lost with the vmkitd that started it (its parent); a jail
# writes it down (VmPaths.exit_status).
UNKNOWN_EXIT = "its exit code or signal is unknown: it outlived the vmkitd that started it"
S = VmState
# Automatic restarts wait 0.5 s, then twice as long after each VM run shorter than STEADY
# seconds, at most MAX_DELAY (docker doubles from 100 ms; a boot here takes seconds).
FIRST_DELAY, MAX_DELAY, STEADY = 0.5, 60.0, 60.0
QMP_EXITS = ("host-qmp-quit", "host-qmp-system-reset")  # someone quit QEMU over QMP
CLEAN_EXITS = ("guest-shutdown", *QMP_EXITS)
log = logging.getLogger("vmkit.core")


def restart_wanted(policy: str, requested: bool, why: str) -> bool:
    """Whether a VM with restart ``policy`` whose QEMU just ended is to be started again:
    never after a stop or kill asked for; after a crash with on-failure or always; after the
    guest shut itself down with always only."""
    if requested or policy == "no" or why in QMP_EXITS:
        return False
    return policy == "always" or why not in CLEAN_EXITS


def restart_delay(failures: int) -> float:
    """Seconds to wait before the automatic restart that follows ``failures`` short runs."""
    return min(FIRST_DELAY * (1 << min(failures, 16)), MAX_DELAY)


class Watch:
    def __init__(self, reg: Registry, layers: DiskLayers) -> None:
        self.reg = reg
        self.layers = layers
        # How a VM is started again (Lifecycle.start); Core sets it once the parts exist.
        self.start: Callable[[str], Awaitable[object]] | None = None
        self._short_runs: dict[str, int] = {}  # VM -> automatic restarts that ended soon
        self._pending: dict[str, asyncio.Task[None]] = {}  # VM -> its restart, waiting

    def handler(self, name: str) -> Callable[[str], None]:
        """What a VM's Machine calls with each QMP event (and "EXIT")."""
        return lambda event: self._on_event(name, event)

    def _on_event(self, name: str, event: str) -> None:
        rec = self.reg.store.vm(name)
        if rec is None:
            return
        if event == "STOP" and rec.state == S.RUNNING:
            self.reg.store.set_vm_state(name, S.PAUSED, pid=rec.pid, started=rec.started)
        elif event == "RESUME" and rec.state == S.PAUSED:
            self.reg.store.set_vm_state(name, S.RUNNING, pid=rec.pid, started=rec.started)
        elif event == "EXIT":
            self._on_exit(rec)

    def _on_exit(self, rec: VmRecord) -> None:
        name = rec.name
        machine = self.reg.machines.pop(name, None)
        self.reg.limits.release(name)
        self.reg.networks.unplug(rec)
        if (hub := self.reg.consoles.pop(name, None)) is not None:
            self.reg.spawn(hub.close())
        if name in self.reg.replacing:
            self.reg.store.set_vm_state(name, S.STOPPED)
            return
        requested = name in self.reg.stopping
        self.reg.stopping.discard(name)
        why = machine.shutdown_reason if machine else ""
        if requested or why in CLEAN_EXITS:
            self.reg.store.set_vm_state(name, S.STOPPED)
        else:
            self.reg.store.set_vm_state(name, S.CRASHED, reason=self.crash_reason(
                name, _exit_text(machine)))
        if rec.spec.auto_remove:
            self.reg.spawn(discard(self.reg, self.layers, name))
        elif restart_wanted(rec.spec.restart, requested, why):
            ran = time.time() - (rec.started or 0)
            runs = self._short_runs.get(name, -1) + 1 if ran < STEADY else 0
            self.restart_later(name, runs)

    def restart_later(self, name: str, short_runs: int = 0) -> None:
        """Start VM ``name`` again after the back-off for ``short_runs`` (its restart
        policy asked for it); a failed start is tried again, waiting longer."""
        self._short_runs[name] = short_runs
        self.cancel_restart(name)
        self._pending[name] = self.reg.spawn(self._restart(name, short_runs))

    def cancel_restart(self, name: str) -> bool:
        """Call off VM ``name``'s automatic restart if one waits ('vmkit stop', kill, rm,
        or a policy set to no); whether one did."""
        task = self._pending.pop(name, None)
        return task is not None and task.cancel()

    async def _restart(self, name: str, short_runs: int) -> None:
        await asyncio.sleep(restart_delay(short_runs))
        self._pending.pop(name, None)  # from here on it is a start as any other, under the lock
        rec = self.reg.store.vm(name)
        if rec is None or rec.state not in (S.STOPPED, S.CRASHED) or self.start is None:
            return  # removed, or started by someone else meanwhile
        log.info("restarting VM %s (restart policy %s)", name, rec.spec.restart)
        try:
            await self.start(name)
        except VmkitError as e:
            log.warning("cannot restart VM %s: %s", name, e.message)
            self.restart_later(name, short_runs + 1)

    def crash_reason(self, name: str, what: str) -> str:
        """``what`` happened to the VM, with the last lines of its QEMU log and console."""
        vmp = self.reg.paths.vm(name)
        details = [what]
        if tail := log_tail(vmp.qemu_log, 2):
            details.append(f"QEMU log: {tail}")
        if tail := log_tail(vmp.serial_log, 2):
            details.append(f"console: {tail}")
        return "; ".join(details)


def _exit_text(machine: Machine | None) -> str:
    if machine is None:
        return "QEMU exited"
    if machine.shutdown_reason == "guest-reset":
        return "the guest reset itself (a reboot or a kernel panic)"
    if (code := machine.exit_code) is not None:
        return f"QEMU {exit_status_text(code)}"
    return f"QEMU exited; {UNKNOWN_EXIT}" if machine.reattached else "QEMU exited"


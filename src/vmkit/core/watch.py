"""Following each VM's QEMU: its QMP events keep the VM's state true, and its exit says
whether it stopped as asked or crashed, and why."""

from __future__ import annotations

from collections.abc import Callable

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


class Watch:
    def __init__(self, reg: Registry, layers: DiskLayers) -> None:
        self.reg = reg
        self.layers = layers

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
        if requested or why in ("guest-shutdown", "host-qmp-quit", "host-qmp-system-reset"):
            self.reg.store.set_vm_state(name, S.STOPPED)
        else:
            self.reg.store.set_vm_state(name, S.CRASHED, reason=self.crash_reason(
                name, _exit_text(machine)))
        if rec.spec.auto_remove:
            self.reg.spawn(discard(self.reg, self.layers, name))

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


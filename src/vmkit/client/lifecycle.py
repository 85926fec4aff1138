"""The SDK's calls on a VM's life: start, stop, kill, restart, pause, resume (each of them
idempotent where docker's is: vmkitd answers 304 for a start of a running VM and a stop or
kill of one that is down), and update (docker's: its restart policy, in any state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import answers as A
from .connection import LONG, Connection, seg

if TYPE_CHECKING:
    from ..models import Vm


class LifecycleCalls(Connection):
    """Mixed into :class:`vmkit.Client`."""

    def _action(self, name: str, action: str, **params: Any) -> Vm:
        path = f"/vms/{seg(name)}/{action}"
        r = self._send("POST", path, params=params, timeout=LONG)
        if r.status_code != 304:
            return A.VM.read(r.content, f"POST {path}", self.plain)
        vm = self._call("GET", f"/vms/{seg(name)}", A.VM)  # it was so already: nothing done
        if self.plain:  # for the CLI's note (its answers are dicts)
            vm["unchanged"] = True  # type: ignore[index]
        return vm

    def start_vm(self, name: str) -> Vm:
        """Start a stopped (or crashed) VM; returns it once its guest is up. A VM that runs
        already is left as it is and returned (the API answers 304, as docker's)."""
        return self._action(name, "start")

    def stop_vm(self, name: str, timeout: float = 20.0) -> Vm:
        """Shut the guest down (ACPI), or end it after ``timeout`` seconds; returns the
        stopped VM (a VM made with ``auto_remove`` is gone afterwards). A VM that is down
        already is returned as it is; a restart its policy has waiting is called off."""
        return self._action(name, "stop", timeout=timeout)

    def kill_vm(self, name: str) -> Vm:
        """End the VM at once, as pulling the plug would; returns the stopped VM (one down
        already as ``stop_vm`` does)."""
        return self._action(name, "kill")

    def restart_vm(self, name: str, timeout: float = 20.0) -> Vm:
        """Stop the VM (as ``stop_vm``) and start it again; returns it once its guest is up."""
        return self._action(name, "restart", timeout=timeout)

    def pause_vm(self, name: str) -> Vm:
        """Freeze the VM's CPUs; it keeps its memory and ports. ``resume_vm`` goes on."""
        return self._action(name, "pause")

    def resume_vm(self, name: str) -> Vm:
        """Let a paused VM run on."""
        return self._action(name, "resume")

    def update_vm(self, name: str, restart: str | None = None) -> Vm:
        """Change VM ``name``, running or not: ``restart``, its restart policy ("no",
        "on-failure" or "always", as :meth:`create_vm`'s); "no" also calls off a restart
        that waits. Returns the VM."""
        return self._call("PATCH", f"/vms/{seg(name)}", A.VM, json={"restart": restart})

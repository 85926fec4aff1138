"""VM lifecycle states and the one table of which action is allowed in which state."""

from __future__ import annotations

from enum import Enum

from .errors import InvalidStateError


class VmState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"  # QEMU died without being asked to stop

    def __str__(self) -> str:
        return self.value


S = VmState
LIVE = frozenset({S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING})  # a QEMU process exists

ALLOWED: dict[str, frozenset[VmState]] = {
    "start": frozenset({S.STOPPED, S.CRASHED}),
    "stop": frozenset({S.STARTING, S.RUNNING, S.PAUSED}),
    "kill": frozenset(LIVE),
    "restart": frozenset({S.RUNNING, S.PAUSED}),
    "pause": frozenset({S.RUNNING}),
    "resume": frozenset({S.PAUSED}),
    "remove": frozenset({S.STOPPED, S.CRASHED}),
    "resize": frozenset({S.STOPPED, S.CRASHED}),
    "exec": frozenset({S.RUNNING}),
    "copy": frozenset({S.RUNNING}),
    "console": frozenset({S.STARTING, S.RUNNING, S.PAUSED}),
    "snapshot": frozenset({S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED}),
    "restore": frozenset({S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED}),
    "fork": frozenset({S.RUNNING, S.PAUSED}),  # forking a VM (not a snapshot) snapshots it live
    "migrate": frozenset({S.RUNNING}),
    "export": frozenset({S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED}),
    "dump": frozenset({S.RUNNING, S.PAUSED}),
    "capture": frozenset({S.RUNNING, S.PAUSED}),
    "diff": frozenset({S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED}),
}

def _hint(action: str, state: VmState, name: str) -> str:
    """What the user can do to make ``action`` possible from ``state``."""
    if state in (S.STARTING, S.STOPPING):
        return f"wait until it is {'running' if state == S.STARTING else 'stopped'}"
    if action in ("start", "remove", "resize"):  # these need it stopped
        extra = f", or remove it at once with 'vmkit rm -f {name}'" if action == "remove" else ""
        return f"stop it first with 'vmkit stop {name}'{extra}"
    if state == S.CRASHED:
        return f"see why with 'vmkit logs {name}', then start it with 'vmkit start {name}'"
    if state == S.STOPPED:
        return f"start it with 'vmkit start {name}'"
    if state == S.PAUSED:
        return f"resume it with 'vmkit resume {name}'"
    return f"it is already {state}"


def require(action: str, state: VmState, name: str) -> None:
    """Raise InvalidStateError unless ``action`` is allowed on a VM in ``state``."""
    allowed = ALLOWED[action]
    if state not in allowed:
        wanted = " or ".join(sorted(s.value for s in allowed))
        raise InvalidStateError(
            f"VM {name} is {state}; {action} needs it {wanted}: {_hint(action, state, name)}")

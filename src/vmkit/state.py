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
    "exec": frozenset({S.RUNNING}),
    "copy": frozenset({S.RUNNING}),
    "console": frozenset({S.STARTING, S.RUNNING, S.PAUSED}),
}

_HINT = {
    S.STOPPED: "start it with 'vmkit start {name}'",
    S.CRASHED: "see 'vmkit logs {name}', then 'vmkit start {name}'",
    S.PAUSED: "resume it with 'vmkit resume {name}'",
    S.RUNNING: "stop it with 'vmkit stop {name}'",
    S.STARTING: "wait until it is running",
    S.STOPPING: "wait until it has stopped",
}


def require(action: str, state: VmState, name: str) -> None:
    """Raise InvalidStateError unless ``action`` is allowed on a VM in ``state``."""
    allowed = ALLOWED[action]
    if state not in allowed:
        wanted = " or ".join(sorted(s.value for s in allowed))
        hint = _HINT[state].format(name=name)
        raise InvalidStateError(f"VM {name} is {state}; {action} needs it {wanted}: {hint}")

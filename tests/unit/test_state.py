"""state.py: which action is allowed in which state, checked for every pair."""

from __future__ import annotations

import itertools

import pytest

from vmkit.errors import ConflictError, InvalidStateError
from vmkit.state import ALLOWED, LIVE, VmState, require

S = VmState

# Written out independently of state.ALLOWED, so a change to the table shows up here.
EXPECTED: dict[str, set[VmState]] = {
    "start": {S.STOPPED, S.CRASHED},
    "stop": {S.STARTING, S.RUNNING, S.PAUSED},
    "kill": {S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING},
    "restart": {S.RUNNING, S.PAUSED},
    "pause": {S.RUNNING},
    "resume": {S.PAUSED},
    "remove": {S.STOPPED, S.CRASHED},
    "resize": {S.STOPPED, S.CRASHED},
    "exec": {S.RUNNING},
    "copy": {S.RUNNING},
    "console": {S.STARTING, S.RUNNING, S.PAUSED},
    "snapshot": {S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED},
    "restore": {S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED},
    "fork": {S.RUNNING, S.PAUSED},
    "migrate": {S.RUNNING},
    "export": {S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED},
    "dump": {S.RUNNING, S.PAUSED},
    "capture": {S.RUNNING, S.PAUSED},
    "diff": {S.RUNNING, S.PAUSED, S.STOPPED, S.CRASHED},
}



def expected_hint(action: str, state: VmState) -> str:
    """What the error should point the user to: it depends on the action and the state."""
    if state == S.STARTING:
        return "wait until it is running"
    if state == S.STOPPING:
        return "wait until it is stopped"
    if action in ("start", "remove", "resize"):
        return "'vmkit stop web'"
    return {S.CRASHED: "'vmkit logs web'", S.STOPPED: "'vmkit start web'",
            S.PAUSED: "'vmkit resume web'", S.RUNNING: "already running"}[state]

PAIRS = list(itertools.product(sorted(EXPECTED), list(VmState)))
ALLOWED_PAIRS = [(a, s) for a, s in PAIRS if s in EXPECTED[a]]
FORBIDDEN_PAIRS = [(a, s) for a, s in PAIRS if s not in EXPECTED[a]]


def test_table_matches() -> None:
    assert {a: set(s) for a, s in ALLOWED.items()} == EXPECTED


def test_live_states() -> None:
    assert LIVE == {S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING}


def test_state_str_is_value() -> None:
    assert [str(s) for s in VmState] == ["starting", "running", "paused", "stopping", "stopped",
                                         "crashed"]
    assert f"{S.RUNNING}" == "running"


@pytest.mark.parametrize("action, state", ALLOWED_PAIRS, ids=[f"{a}-{s}" for a, s in ALLOWED_PAIRS])
def test_allowed(action: str, state: VmState) -> None:
    require(action, state, "web")  # does not raise


@pytest.mark.parametrize("action, state", FORBIDDEN_PAIRS,
                         ids=[f"{a}-{s}" for a, s in FORBIDDEN_PAIRS])
def test_forbidden(action: str, state: VmState) -> None:
    with pytest.raises(InvalidStateError) as exc:
        require(action, state, "web")
    err = exc.value
    assert isinstance(err, ConflictError) and err.status == 409
    msg = err.message
    assert msg.startswith(f"VM web is {state.value}; {action} needs it ")
    for wanted in EXPECTED[action]:
        assert wanted.value in msg
    assert expected_hint(action, state) in msg


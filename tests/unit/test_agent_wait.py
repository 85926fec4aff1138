"""core.launch._agent_or_exit: a boot waits for the guest agent, but not past QEMU's death,
and wakes a guest that stays silent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from vmkit.errors import AgentError
from vmkit.core import launch
from vmkit.core.launch import _agent_or_exit


class FakeAgent:
    def __init__(self, connect: Any) -> None:
        self.connect = connect


class FakeMachine:
    def __init__(self, connect: Any) -> None:
        self.agent = FakeAgent(connect)
        self.exited = asyncio.Event()
        self.executed: list[str] = []

    async def execute(self, cmd: str, args: Any = None) -> Any:
        self.executed.append(cmd)
        return "RIP=ffffffff81a17a0b RFL=00000246" if cmd == "human-monitor-command" else {}


def test_a_qemu_that_exits_ends_the_wait_at_once() -> None:
    async def never(timeout: float) -> None:
        await asyncio.sleep(timeout)

    async def main() -> float:
        machine = FakeMachine(never)
        asyncio.get_running_loop().call_later(0.05, machine.exited.set)
        start = time.monotonic()
        await _agent_or_exit(machine, 30.0, "vm", kick=False)  # type: ignore[arg-type]
        return time.monotonic() - start

    assert asyncio.run(main()) < 5.0


def test_the_agents_answer_or_error_comes_through() -> None:
    async def answers(timeout: float) -> None:
        await asyncio.sleep(0.01)

    async def fails(timeout: float) -> None:
        raise AgentError("the guest agent did not answer")

    asyncio.run(_agent_or_exit(FakeMachine(answers), 30.0, "vm", kick=True))  # type: ignore[arg-type]
    with pytest.raises(AgentError, match="did not answer"):
        asyncio.run(_agent_or_exit(FakeMachine(fails), 30.0, "vm", kick=False))  # type: ignore[arg-type]


def test_a_silent_guest_has_its_vcpus_woken_until_it_answers(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """A boot that hangs with its vCPUs halted (a lost wake-up under TCG) is paused and
    resumed every KICK_AFTER seconds; the wait still ends when the agent answers."""
    monkeypatch.setattr(launch, "KICK_AFTER", 0.05)

    async def answers_late(timeout: float) -> None:
        await asyncio.sleep(0.3)

    machine = FakeMachine(answers_late)
    asyncio.run(_agent_or_exit(machine, 30.0, "vm", kick=True))  # type: ignore[arg-type]
    kicks = [cmd for cmd in machine.executed if cmd != "human-monitor-command"]
    assert kicks[:4] == ["stop", "cont", "stop", "cont"]
    assert "human-monitor-command" in machine.executed  # where the vCPUs were is logged

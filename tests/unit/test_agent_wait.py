"""host._agent_or_exit: a boot waits for the guest agent, but not past QEMU's death."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from vmkit.errors import AgentError
from vmkit.core.launch import _agent_or_exit


class FakeAgent:
    def __init__(self, connect: Any) -> None:
        self.connect = connect


class FakeMachine:
    def __init__(self, connect: Any) -> None:
        self.agent = FakeAgent(connect)
        self.exited = asyncio.Event()


def test_a_qemu_that_exits_ends_the_wait_at_once() -> None:
    async def never(timeout: float) -> None:
        await asyncio.sleep(timeout)

    async def main() -> float:
        machine = FakeMachine(never)
        asyncio.get_running_loop().call_later(0.05, machine.exited.set)
        start = time.monotonic()
        await _agent_or_exit(machine, 30.0)  # type: ignore[arg-type]
        return time.monotonic() - start

    assert asyncio.run(main()) < 5.0


def test_the_agents_answer_or_error_comes_through() -> None:
    async def answers(timeout: float) -> None:
        await asyncio.sleep(0.01)

    async def fails(timeout: float) -> None:
        raise AgentError("the guest agent did not answer")

    asyncio.run(_agent_or_exit(FakeMachine(answers), 30.0))  # type: ignore[arg-type]
    with pytest.raises(AgentError, match="did not answer"):
        asyncio.run(_agent_or_exit(FakeMachine(fails), 30.0))  # type: ignore[arg-type]

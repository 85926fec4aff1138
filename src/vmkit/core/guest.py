"""Reaching into a running guest: commands, files, the serial console and its log, and
waiting for cloud-init."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, VmkitError
from ..machine.agent import GuestAgent
from ..machine.console import ConsoleHub
from ..paths import open_nofollow
from .logtimes import log_start
from .registry import Registry
from .terminal import Terminal

CLOUD_INIT_TIMEOUT = 1800.0  # a user's cloud-config may install packages


class Guest:
    def __init__(self, reg: Registry) -> None:
        self.core = reg

    async def _agent(self, name: str, action: str) -> GuestAgent:
        machine = self.core.live_machine(name, action)
        if not machine.agent.connected:
            await machine.agent.connect(timeout=5.0)
        return machine.agent

    async def exec(self, name: str, argv: list[str], stdin: bytes | None = None
                   ) -> AsyncIterator[tuple[str, bytes | int]]:
        """Run ``argv`` in the guest: its output as ("stdout"/"stderr", bytes) pairs, then
        ("exit", code)."""
        if not argv:
            raise InvalidInputError("give a command to run, e.g. vmkit exec NAME -- uname -a")
        agent = await self._agent(name, "exec")
        return agent.exec_stream(argv, stdin)

    async def terminal(self, name: str, argv: list[str] | None, rows: int, cols: int,
                       term: str) -> Terminal:
        """A command (root's login shell without ``argv``) on a new terminal in the guest."""
        return await Terminal.start(await self._agent(name, "exec"), argv,
                                    rows, cols, term)

    async def read_file(self, name: str, path: str) -> AsyncIterator[bytes]:
        agent = await self._agent(name, "copy")
        chunks = agent.read_file(_guest_path(path))
        first = await anext(chunks, b"")  # fail here, before a response has started

        async def rest() -> AsyncIterator[bytes]:
            yield first
            async for c in chunks:
                yield c
        return rest()

    async def write_file(self, name: str, path: str, chunks: AsyncIterator[bytes]) -> int:
        agent = await self._agent(name, "copy")
        return await agent.write_file(_guest_path(path), chunks)

    async def console(self, name: str) -> ConsoleHub:
        self.core.live_machine(name, "console")
        hub = self.core.consoles.get(name)
        if hub is None:
            hub = self.core.consoles[name] = ConsoleHub(self.core.paths.vm(name).console)
        return hub

    def log(self, name: str, follow: bool = False, since: float | None = None,
            tail: int | None = None) -> AsyncIterator[bytes]:
        """The VM's serial console log, kept on disk across restarts, from what arrived at
        unix time ``since`` and/or its last ``tail`` lines (logtimes.log_start); with
        ``follow``, what it writes next too, for as long as it runs. An unknown VM raises
        here, at once."""
        self.core.record(name)
        vmp = self.core.paths.vm(name)
        return _read_log(vmp.serial_log, lambda: follow and self.core.is_live(name),
                         log_start(vmp, since, tail))

    async def cloud_init(self, name: str) -> dict[str, Any]:
        """Wait for cloud-init in the new guest to finish: {"status": "done" | "error", ...}.
        A failure is reported, not undone: the VM runs on, for the user to look into."""
        if (machine := self.core.machines.get(name)) is None:
            return {"status": "error", "detail": "the VM stopped before cloud-init finished"}
        out = bytearray()
        code: Any = None
        try:
            async with asyncio.timeout(CLOUD_INIT_TIMEOUT):
                async for _, data in machine.agent.exec_stream(
                        ["cloud-init", "status", "--wait", "--long"]):
                    if isinstance(data, bytes):
                        out += data
                    else:
                        code = data
        except (TimeoutError, VmkitError) as e:
            return {"status": "error", "detail": f"could not follow cloud-init: {e or 'timed out'}"}
        text = out.decode(errors="replace").strip()
        if code == 0:
            return {"status": "done", "detail": ""}
        details = [line.strip() for line in text.splitlines()
                   if line.strip().startswith(("detail:", "errors:", "- ", "status:"))]
        return {"status": "error", "detail": " ".join(details)[-500:] or text[-500:]}


def _guest_path(path: str) -> str:
    if not path.startswith("/") or "\0" in path:
        raise InvalidInputError(f"guest path {path!r} must be absolute, e.g. NAME:/root/file")
    return path


async def _read_log(path: Path, more: Callable[[], bool], start: int = 0
                    ) -> AsyncIterator[bytes]:
    """The log at ``path`` from offset ``start``, then what is written to it while
    ``more()`` (the VM runs and the client follows)."""
    with contextlib.suppress(OSError), open_nofollow(path) as f:
        f.seek(start)
        while True:
            data = f.read(65536)
            if data:
                yield data
            elif not more():
                return  # a stopped VM writes nothing more: a follower is done
            else:
                await asyncio.sleep(0.2)

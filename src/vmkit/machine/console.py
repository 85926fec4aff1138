"""The serial console of a VM, shared: one connection to QEMU's console socket, fanned out.

QEMU's socket chardev serves one client at a time, but a console may be watched from a CLI
and a browser at once, so the daemon holds the one connection and relays it to every viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from ..errors import InvalidStateError


class ConsoleHub:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._viewers: set[asyncio.Queue[bytes | None]] = set()
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def _ensure_connected(self) -> None:
        if self._writer:
            return
        try:
            reader, self._writer = await asyncio.open_unix_connection(self.path)
        except OSError as e:
            raise InvalidStateError(f"the VM's console is not available: {e.strerror}") from e
        self._pump = asyncio.create_task(self._relay(reader))

    async def _relay(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                for q in self._viewers:
                    q.put_nowait(data)
        finally:
            for q in self._viewers:
                q.put_nowait(None)  # end of console: the VM stopped
            self._writer = None

    async def attach(self) -> asyncio.Queue[bytes | None]:
        await self._ensure_connected()
        q: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._viewers.add(q)
        return q

    def detach(self, q: asyncio.Queue[bytes | None]) -> None:
        self._viewers.discard(q)

    async def write(self, data: bytes) -> None:
        if self._writer:
            self._writer.write(data)
            await self._writer.drain()

    async def close(self) -> None:
        if self._writer:
            self._writer.close()
        if self._pump:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump

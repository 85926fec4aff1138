"""A client for qemu-guest-agent, the standard agent inside the guest, on its virtio-serial port.

The agent speaks QMP-style JSON without a greeting. The stream may hold stale replies (a
request sent before the guest opened the port, a reply to a client that timed out), so every
session starts with guest-sync-delimited: the agent answers with 0xFF + the id we chose, and
everything before it is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..errors import AgentError, InvalidInputError

CHUNK = 1 << 20  # bytes per guest-file-read/-write; the agent allows up to 48 MiB
LINE_LIMIT = 4 * CHUNK  # one reply line holds a base64 chunk
# A file that reports no size (a /proc file, a character device) is read whole before its first
# byte is sent, and refused past this: /dev/zero would never end. /proc/kallsyms is ~4 MiB.
UNSIZED_LIMIT = 8 * CHUNK
# Runs the user's argv with stdout/stderr in files we opened first, then unlinks them: we
# read them while the command runs (qemu-ga itself returns output only after exit) and
# nothing is left in the guest. Arguments travel as argv, never through a shell string.
EXEC_WRAPPER = 'exec >"$1" 2>"$2"; rm -f "$1" "$2"; shift 2; exec "$@"'


class GuestAgent:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._in_step = True  # False while a request's reply may still be unread

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self, timeout: float) -> None:
        """Connect and sync, retrying until the agent in the guest answers or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with self._lock:
                    if not self._writer:
                        self._reader, self._writer = await asyncio.open_unix_connection(
                            self.path, limit=LINE_LIMIT)
                    await self._sync(min(0.5, max(0.05, deadline - time.monotonic())))
                    self._in_step = True
                return
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, AgentError) as e:
                if isinstance(e, (OSError, asyncio.IncompleteReadError)):
                    await self.close()
                if time.monotonic() >= deadline:
                    raise AgentError(
                        f"the guest agent did not answer within {timeout:.0f} s; is "
                        "qemu-guest-agent installed and running in the guest?"
                    ) from e
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._writer:
            self._writer.close()
        self._reader = self._writer = None

    def _send(self, cmd: str, args: dict[str, Any] | None) -> None:
        assert self._writer
        msg: dict[str, Any] = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self._writer.write(json.dumps(msg).encode() + b"\n")

    async def _sync(self, timeout: float) -> None:
        assert self._reader and self._writer
        token = random.randrange(1, 1 << 31)
        self._writer.write(b"\xff")
        self._send("guest-sync-delimited", {"id": token})
        await self._writer.drain()

        async def wait_for_token() -> None:
            assert self._reader
            while True:
                await self._reader.readuntil(b"\xff")
                line = await self._reader.readline()
                if json.loads(line or b"{}").get("return") == token:
                    return

        await asyncio.wait_for(wait_for_token(), timeout)

    async def execute(self, cmd: str, args: dict[str, Any] | None = None,
                      timeout: float = 30.0, reply: bool = True) -> Any:
        if not self._writer:  # the stream dropped (a guest paused or restarted): sync again
            await self.connect(timeout=5.0)
        async with self._lock:
            if not self._writer:
                raise AgentError("the guest agent is not connected; is the VM running?")
            assert self._reader
            try:
                if not self._in_step:  # an earlier request was abandoned mid-way: resync
                    await self._sync(timeout)
                self._in_step = False
                self._send(cmd, args)
                await self._writer.drain()
                if not reply:
                    self._in_step = True
                    return None
                line = await asyncio.wait_for(self._reader.readline(), timeout)
                self._in_step = True
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                await self.close()  # the stream is out of step now; reconnect and sync later
                raise AgentError(f"the guest agent did not complete {cmd}: {e or 'timeout'}") from e
            if not line:
                await self.close()
                raise AgentError(f"the guest agent closed the connection during {cmd}")
            answer = json.loads(line)
            if "error" in answer:
                raise AgentError(f"{cmd} failed in the guest: {answer['error'].get('desc')}")
            return answer.get("return")

    # --- intent-named operations -------------------------------------------------------

    async def shutdown(self) -> None:
        await self.execute("guest-shutdown", {"mode": "powerdown"}, reply=False)

    async def set_time(self, timeout: float = 5.0) -> None:
        """Set the guest's clock to the host's (after the guest was paused or moved)."""
        try:
            await self.execute("guest-set-time", {"time": time.time_ns()}, timeout=timeout)
        except AgentError as e:
            if "hwclock" not in e.message:  # only the copy into the guest's RTC failed
                raise

    async def _open(self, path: str, mode: str) -> int:
        return int(await self.execute("guest-file-open", {"path": path, "mode": mode}))

    async def _read(self, handle: int, count: int = CHUNK) -> tuple[bytes, bool]:
        r = await self.execute("guest-file-read", {"handle": handle, "count": count})
        return base64.b64decode(r["buf-b64"]), bool(r["eof"])

    async def _close(self, handle: int) -> None:
        await self.execute("guest-file-close", {"handle": handle})

    async def _size(self, handle: int) -> int:
        """The size the file reports, or 0: /proc files and character devices report 0, and
        a tty or pipe cannot seek at all."""
        try:
            r = await self.execute("guest-file-seek", {"handle": handle, "offset": 0,
                                                       "whence": "end"})
        except AgentError:
            return 0
        await self.execute("guest-file-seek", {"handle": handle, "offset": 0, "whence": "set"})
        return int(r["position"])

    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        """Yield the bytes of ``path``. A file that reports a size is read for that many at
        most, so a block device or a growing log ends. One that reports none must end within
        UNSIZED_LIMIT bytes; it is read whole before the first yield, so an endless one
        (/dev/zero) is refused before a caller has sent anything."""
        handle = await self._open(path, "r")
        try:
            if size := await self._size(handle):
                async for data in self._read_upto(path, handle, size):
                    yield data
                return
            head = [data async for data in self._read_upto(path, handle, UNSIZED_LIMIT + 1)]
            if sum(map(len, head)) > UNSIZED_LIMIT:
                raise InvalidInputError(
                    f"{path} is not a regular file: it reports no size but keeps producing "
                    f"data (more than {UNSIZED_LIMIT >> 20} MiB); copy a bounded part "
                    f"instead, e.g. vmkit exec NAME -- head -c 1M {path} > file")
            for data in head:
                yield data
        finally:
            await self._close(handle)

    async def _read_upto(self, path: str, handle: int, limit: int) -> AsyncIterator[bytes]:
        while limit > 0:
            try:
                data, eof = await self._read(handle, min(CHUNK, limit))
            except AgentError as e:
                if "Is a directory" not in e.message:  # the guest's strerror(EISDIR)
                    raise
                raise InvalidInputError(
                    f"{path} is a directory: this reads one file; copy directories with "
                    f"vmkit cp -r NAME:{path} DEST") from None
            if data:
                yield data
            if eof or not data:
                return
            limit -= len(data)

    async def write_file(self, path: str, chunks: AsyncIterator[bytes]) -> int:
        handle = await self._open(path, "w")
        total = 0
        try:
            async for chunk in chunks:
                for i in range(0, len(chunk), CHUNK):
                    part = chunk[i : i + CHUNK]
                    await self.execute("guest-file-write", {
                        "handle": handle, "buf-b64": base64.b64encode(part).decode()})
                    total += len(part)
        finally:
            await self._close(handle)
        return total

    async def exec_stream(self, argv: list[str], stdin: bytes | None = None
                          ) -> AsyncIterator[tuple[str, bytes | int]]:
        """Run ``argv`` in the guest; yield ("stdout"|"stderr", bytes) as output arrives and
        finally ("exit", code). A command killed by signal N exits with 128 + N."""
        stem = f"/tmp/.vmkit-exec-{random.randrange(1 << 48):012x}"
        handles = {"stdout": await self._open(f"{stem}.out", "w+"),
                   "stderr": await self._open(f"{stem}.err", "w+")}
        try:
            args: dict[str, Any] = {
                "path": "/bin/sh", "capture-output": False,
                "arg": ["-c", EXEC_WRAPPER, "sh", f"{stem}.out", f"{stem}.err", *argv],
            }
            if stdin:
                args["input-data"] = base64.b64encode(stdin).decode()
            pid = (await self.execute("guest-exec", args))["pid"]
            delay = 0.005
            while True:
                status = await self.execute("guest-exec-status", {"pid": pid})
                got = False
                for stream, handle in handles.items():
                    async for data in self._drain(handle):
                        got = True
                        yield stream, data
                if status["exited"]:
                    # Output written just before exit may land after our read: drain once more.
                    for stream, handle in handles.items():
                        async for data in self._drain(handle):
                            yield stream, data
                    code = status.get("exitcode")
                    yield "exit", code if code is not None else 128 + status.get("signal", 0)
                    return
                delay = 0.005 if got else min(delay * 2, 0.2)
                await asyncio.sleep(delay)
        finally:
            for handle in handles.values():
                await self._close(handle)

    async def _drain(self, handle: int) -> AsyncIterator[bytes]:
        while True:
            data, eof = await self._read(handle)
            if data:
                yield data
            if eof:
                # glibc makes end-of-file sticky; a seek clears it so later output is seen.
                await self.execute("guest-file-seek", {"handle": handle, "offset": 0, "whence": 1})
                return
            if not data:
                return

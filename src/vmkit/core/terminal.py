"""An interactive terminal in a guest (`vmkit shell`, `vmkit exec -it`) over the guest agent.

qemu-guest-agent runs commands without a terminal and without streams, so vmkitd starts
images/guest/terminal (plain perl, in every vmkit image) through guest-exec: it opens a
pseudo-terminal, runs the command on it and relays through files in a directory of its own,
which vmkitd reads and writes with guest-file-*: keystrokes and window sizes into a FIFO,
the terminal's output in segment files (the helper's header describes both). No QEMU device
and nothing in the image is needed beyond the agent and perl, so VMs made before this work too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from ..errors import AgentError, InvalidStateError
from ..machine.agent import GuestAgent

HELPER = resources.files("vmkit.images").joinpath("guest", "terminal").read_text()
PERL = "/usr/bin/perl"
SEGMENT = 1 << 18  # the helper's segment size
READ = 1 << 16  # bytes per guest-file-read: a terminal's output comes in small pieces
IDLE = 0.1  # seconds between reads at most while the terminal prints nothing


class Terminal:
    """One running terminal session; ``output()`` yields what it prints, then its exit code."""

    def __init__(self, agent: GuestAgent, pid: int, where: str) -> None:
        self.agent, self.pid, self.dir = agent, pid, where
        self._out = -1  # the segment file being read
        self._fifo: int | None = None
        self._typed = asyncio.Event()  # input was sent: its echo comes soon, look sooner
        self._done = False
        self._ended: dict[str, Any] | None = None  # the helper's last status, once it exited

    @classmethod
    async def start(cls, agent: GuestAgent, argv: list[str] | None, rows: int, cols: int,
                    term: str) -> Terminal:
        where = f"/tmp/.vmkit-tty-{random.randrange(1 << 48):012x}"
        args = ["-e", HELPER, "--", where, str(rows), str(cols), term, *(argv or [])]
        try:
            pid = (await agent.execute("guest-exec", {"path": PERL, "arg": args,
                                                      "capture-output": True}))["pid"]
        except AgentError as e:
            raise InvalidStateError(f"this guest cannot open a terminal: {PERL} did not start "
                                    f"({e.message}); use 'vmkit exec' without -t") from None
        self = cls(agent, int(pid), where)
        out = await self._open_when_ready(f"{where}/out.0", "r")
        assert out is not None  # only the input can be gone (see _open_when_ready)
        self._out = out
        self._fifo = await self._open_when_ready(f"{where}/in", "w")
        return self

    async def _open_when_ready(self, path: str, mode: str) -> int | None:
        """Open one of the helper's files, which it makes within moments of starting; None
        for its input if it has ended already (a command that could not run: nothing more
        goes in, and its output says why)."""
        delay = 0.005
        while True:
            if (handle := await self._try_open(path, mode)) is not None:
                return handle
            status = await self._status()
            if status["exited"] and (handle := await self._try_open(path, mode)) is not None:
                return handle  # it ran and ended (quickly), leaving its output
            if status["exited"] and mode == "w":
                return None  # its input FIFO has no reader any more
            if status["exited"]:
                err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
                raise InvalidStateError("the guest could not open a terminal: "
                                        f"{err.strip() or 'its helper exited'}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def output(self) -> AsyncIterator[bytes | int]:
        """What the terminal prints, as it prints it; last, the command's exit code."""
        seg, got = 0, 0  # the segment being read, and how much of it
        delay = 0.005
        while True:
            data = await self._read(self._out)
            if not data and got >= SEGMENT and (
                    nxt := await self._try_open(f"{self.dir}/out.{seg + 1}")) is not None:
                await self._close(self._out)  # a full segment, read: on to the next
                self._out, seg, got = nxt, seg + 1, 0
                await self._send("a", str(seg - 1).encode())
                continue
            if data:
                got += len(data)
                delay = 0.005
                yield data
                continue
            status = await self._status()
            if status["exited"]:
                async for rest in self._rest(seg, got):
                    yield rest
                self._done = True
                yield int(status.get("exitcode", 128 + status.get("signal", 0)))
                return
            self._typed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._typed.wait(), delay)
            delay = min(delay * 2, IDLE)

    async def _rest(self, seg: int, got: int) -> AsyncIterator[bytes]:
        """What the helper wrote before it exited (it no longer waits for segments read)."""
        while True:
            while data := await self._read(self._out):
                got += len(data)
                yield data
            if got < SEGMENT or (nxt := await self._try_open(f"{self.dir}/out.{seg + 1}")) is None:
                return
            await self._close(self._out)
            self._out, seg, got = nxt, seg + 1, 0

    async def write(self, data: bytes) -> None:
        for i in range(0, len(data), 4096):  # within what the FIFO takes at once
            await self._send("d", data[i:i + 4096])
        self._typed.set()

    async def resize(self, rows: int, cols: int) -> None:
        await self._send("w", f"{rows} {cols}".encode())

    async def close(self) -> None:
        """End the session: hang up a command still running, and remove the helper's files."""
        with contextlib.suppress(AgentError):
            if not self._done:
                await self._send("k", b"")
            for handle in (self._out, self._fifo):
                if handle is not None and handle >= 0:
                    await self._close(handle)
            self._out, self._fifo = -1, None
            if self._done:
                await self.agent.execute("guest-exec", {"path": "/bin/rm",
                                                        "arg": ["-rf", self.dir]})

    async def _send(self, kind: str, body: bytes) -> None:
        if self._fifo is None:
            return
        message = kind.encode() + b"%06d" % len(body) + body
        with contextlib.suppress(AgentError):  # it ended: output() tells how
            await self.agent.execute("guest-file-write", {
                "handle": self._fifo, "buf-b64": base64.b64encode(message).decode()})
            await self.agent.execute("guest-file-flush", {"handle": self._fifo})

    async def _status(self) -> dict[str, Any]:
        """The helper's guest-exec status. The agent forgets a process once it has reported
        its exit, so that report is kept for whoever asks next."""
        if self._ended is None:
            status: dict[str, Any] = await self.agent.execute("guest-exec-status",
                                                              {"pid": self.pid})
            if not status["exited"]:
                return status
            self._ended = status
        return self._ended

    async def _read(self, handle: int) -> bytes:
        r = await self.agent.execute("guest-file-read", {"handle": handle, "count": READ})
        if r["eof"]:  # glibc keeps end-of-file sticky; a seek clears it for what comes next
            await self.agent.execute("guest-file-seek", {"handle": handle, "offset": 0,
                                                         "whence": 1})
        return base64.b64decode(r["buf-b64"])

    async def _try_open(self, path: str, mode: str = "r") -> int | None:
        try:
            return int(await self.agent.execute("guest-file-open", {"path": path, "mode": mode}))
        except AgentError:
            return None

    async def _close(self, handle: int) -> None:
        await self.agent.execute("guest-file-close", {"handle": handle})

"""GuestAgent.read_file against a fake qemu-ga: bounded by the size a file reports, and an
endless file that reports none is refused before its first byte is yielded."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from vmkit.machine.agent import CHUNK, UNSIZED_LIMIT, GuestAgent
from vmkit.errors import AgentError, InvalidInputError


class FakeGuestFile:
    """What qemu-ga does with one open file: ``content`` is what reads return (None: zeros
    forever), ``size`` what a seek to the end reports (None: the seek fails, as on a tty)."""

    def __init__(self, content: bytes | None, size: int | None, read_error: str = "") -> None:
        self.content, self.size, self.read_error = content, size, read_error
        self.pos = 0
        self.closed = False


def agent_for(f: FakeGuestFile) -> GuestAgent:
    agent = GuestAgent(Path("/nonexistent/agent.sock"))

    async def execute(cmd: str, args: dict[str, Any] | None = None, **_: Any) -> Any:
        assert args is not None
        if cmd == "guest-file-open":
            return 1000
        assert args["handle"] == 1000 and not f.closed
        if cmd == "guest-file-seek":
            if f.size is None:
                raise AgentError("guest-file-seek failed in the guest: failed to seek file: "
                                 "Illegal seek")
            f.pos = f.size if args["whence"] == "end" else 0
            return {"position": f.pos, "eof": False}
        if cmd == "guest-file-read":
            if f.read_error:
                raise AgentError(f"guest-file-read failed in the guest: failed to read file: "
                                 f"{f.read_error}")
            if f.content is None:
                data = bytes(args["count"])
            else:
                data = f.content[f.pos : f.pos + args["count"]]
            f.pos += len(data)
            eof = f.content is not None and f.pos >= len(f.content)
            return {"count": len(data), "buf-b64": base64.b64encode(data).decode(), "eof": eof}
        if cmd == "guest-file-close":
            f.closed = True
            return {}
        raise AssertionError(cmd)

    agent.execute = execute  # type: ignore[method-assign]
    return agent


def read(f: FakeGuestFile, path: str = "/some/file") -> bytes:
    async def main() -> bytes:
        return b"".join([data async for data in agent_for(f).read_file(path)])

    try:
        return asyncio.run(main())
    finally:
        assert f.closed


def test_a_regular_file_is_read_exactly() -> None:
    content = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"
    assert read(FakeGuestFile(content, len(content))) == content


def test_a_file_is_read_up_to_the_size_it_reported() -> None:
    # A log that grew after the copy started, a block device (no eof at its end), a sysfs
    # attribute (reports 4096 bytes, holds a few).
    assert read(FakeGuestFile(b"x" * 100 + b"written later", 100)) == b"x" * 100
    assert read(FakeGuestFile(None, 3 * CHUNK)) == bytes(3 * CHUNK)
    assert read(FakeGuestFile(b"52:54:00:12:34:56\n", 4096)) == b"52:54:00:12:34:56\n"


def test_a_file_without_a_size_is_read_to_its_end_within_the_limit() -> None:
    cpuinfo = b"processor\t: 0\n" * 100
    assert read(FakeGuestFile(cpuinfo, 0)) == cpuinfo
    kallsyms = b"s" * UNSIZED_LIMIT
    assert read(FakeGuestFile(kallsyms, 0)) == kallsyms
    assert read(FakeGuestFile(b"", 0)) == b""
    assert read(FakeGuestFile(b"from a pipe", None)) == b"from a pipe"


def test_an_endless_file_is_refused_before_its_first_byte() -> None:
    f = FakeGuestFile(None, 0)

    async def main() -> None:
        await anext(agent_for(f).read_file("/dev/zero"))

    with pytest.raises(InvalidInputError, match=r"/dev/zero is not a regular file.*head -c"):
        asyncio.run(main())
    assert f.closed
    assert f.pos == UNSIZED_LIMIT + 1  # it stopped reading just past the limit
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read(FakeGuestFile(b"s" * (UNSIZED_LIMIT + 1), 0))


def test_a_directory_is_named_as_such() -> None:
    with pytest.raises(InvalidInputError, match=r"/root is a directory.*cp -r"):
        read(FakeGuestFile(None, (1 << 63) - 1, read_error="Is a directory"), "/root")
    with pytest.raises(AgentError, match="Input/output error"):
        read(FakeGuestFile(None, 10, read_error="Input/output error"))

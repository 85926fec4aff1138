"""Inside a VM, on the core's guest part: run a command (exec), on a terminal too, copy files
in and out, read its serial console log."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from ...core.terminal import Terminal
from ...errors import InvalidInputError, TooLargeError, VmkitError, to_body
from ...server import Server
from ...spec import validate_name
from ..auth import accept
from ..models import MAX_STDIN_BYTES, ExecRequest
from ..params import VmName
from ..responses import content

GuestPath = Annotated[str, Query(max_length=4096)]


class TerminalStart(BaseModel):
    """The first message on /terminal: what to run and the client's window."""
    argv: list[Annotated[str, Field(max_length=65536, pattern="^[^\x00]*$")]] | None = Field(
        None, max_length=4096, description="the command; none: root's login shell")
    rows: int = Field(24, ge=1, le=10000)
    cols: int = Field(80, ge=1, le=10000)
    term: str = Field("xterm", pattern="^[A-Za-z0-9._+-]{1,64}$")


def router(server: Server, token: str | None) -> APIRouter:
    """``token``: what each websocket must send (see auth.py); None: nothing."""
    api = APIRouter()

    @api.post("/v1/vms/{name}/exec", responses=content("application/x-ndjson"))
    async def exec_vm(name: VmName, body: ExecRequest) -> StreamingResponse:
        """Run a command in the guest. Streams NDJSON lines: {"stdout": base64},
        {"stderr": base64}, and last {"exit_code": N}."""
        events = await server.core.guest.exec(name, body.argv, decode_stdin(body.stdin))
        return StreamingResponse(ndjson(events), media_type="application/x-ndjson")

    @api.websocket("/v1/vms/{name}/terminal")
    async def terminal(ws: WebSocket, name: str) -> None:
        """A command on a terminal in the guest (`vmkit shell`, `vmkit exec -it`). The client
        sends first a JSON text frame {"argv": [...] or null for root's login shell, "rows",
        "cols", "term"}, then binary frames (keystrokes) and text frames {"rows", "cols"} when
        its window changes. The server sends binary frames (the terminal's output), then a
        text frame {"exit_code": N}, and closes. An error closes with 4000 + its HTTP status."""
        if not await accept(ws, token):
            return
        try:
            validate_name(name)
            start = TerminalStart.model_validate_json(await ws.receive_text())
            session = await server.core.guest.terminal(name, start.argv, start.rows,
                                                       start.cols, start.term)
        except ValidationError as e:
            bad = InvalidInputError(f"bad terminal request: {e.errors()[0]['msg']}")
            await close_with(ws, bad)
            return
        except VmkitError as e:
            await close_with(ws, e)
            return
        try:
            await relay_terminal(ws, session)
        finally:
            await session.close()

    @api.get("/v1/vms/{name}/files", responses=content("application/octet-stream"))
    async def read_file(name: VmName, path: GuestPath) -> StreamingResponse:
        """Download a file from the guest."""
        return StreamingResponse(await server.core.guest.read_file(name, path),
                                 media_type="application/octet-stream")

    @api.put("/v1/vms/{name}/files")
    async def write_file(name: VmName, path: GuestPath, request: Request) -> dict[str, int]:
        """Upload the request body to a file in the guest."""
        return {"bytes": await server.core.guest.write_file(name, path, request.stream())}

    @api.get("/v1/vms/{name}/logs", responses=content("text/plain"))
    async def logs(name: VmName, follow: bool = False,
                   since: Annotated[float | None, Query(
                       ge=0, description="only what arrived from this unix time on (to the "
                       "second: up to a second more)")] = None,
                   tail: Annotated[int | None, Query(
                       ge=0, description="only the last N lines (then, with follow, what "
                       "comes next)")] = None) -> StreamingResponse:
        """The VM's serial console output, kept on disk across restarts."""
        # here: an unknown VM is a 404, not a cut stream
        log = server.core.guest.log(name, follow, since, tail)
        return StreamingResponse(log, media_type="text/plain")

    return api


async def relay_terminal(ws: WebSocket, session: Terminal) -> None:
    """Pass the terminal's output to the client and the client's input to it, until the
    command ends (sent as {"exit_code": N}) or the client goes."""
    async def to_client() -> None:
        try:
            async for item in session.output():
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_text(json.dumps({"exit_code": item}))
        except VmkitError as e:  # the guest agent stopped answering: the VM stopped
            await close_with(ws, e)
            return
        await ws.close(code=1000, reason="the command ended")

    async def from_client() -> None:
        while (msg := await ws.receive())["type"] != "websocket.disconnect":
            if msg.get("bytes"):
                await session.write(msg["bytes"])
            elif msg.get("text"):
                size = json.loads(msg["text"])
                await session.resize(int(size["rows"]), int(size["cols"]))

    tasks = [asyncio.create_task(to_client()), asyncio.create_task(from_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


async def close_with(ws: WebSocket, e: VmkitError) -> None:
    """Close with 4000 + the error's HTTP status and "KIND:MESSAGE" (a close reason holds
    123 bytes) for the client to raise it again."""
    reason = f"{e.kind}:{e.message}".encode()[:123].decode(errors="ignore")
    await ws.close(code=4000 + e.status, reason=reason)


def decode_stdin(text: str | None) -> bytes | None:
    """exec's stdin: base64 (as its output is), so that any bytes can be sent."""
    if not text:
        return None
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidInputError("stdin must be base64-encoded (text as UTF-8 first), e.g. "
                                '{"stdin": "aGVsbG8K"} for "hello\\n"') from None
    if len(data) > MAX_STDIN_BYTES:
        raise TooLargeError(f"stdin is larger than {MAX_STDIN_BYTES >> 20} MiB: copy the data "
                            "in with cp (PUT /v1/vms/NAME/files) and read it from there")
    return data


async def ndjson(events: AsyncIterator[tuple[str, bytes | int]]) -> AsyncIterator[bytes]:
    """exec's events as NDJSON lines; an error on the way becomes the last line."""
    try:
        async for stream, data in events:
            if stream == "exit":
                yield json.dumps({"exit_code": data}).encode() + b"\n"
            else:
                assert isinstance(data, bytes)
                yield json.dumps({stream: base64.b64encode(data).decode()}).encode() + b"\n"
    except VmkitError as e:
        yield json.dumps(to_body(e)).encode() + b"\n"


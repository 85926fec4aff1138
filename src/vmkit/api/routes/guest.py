"""Inside a VM, on the core's guest part: run a command (exec), copy files in and out, read
its serial console log."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from ...errors import InvalidInputError, TooLargeError, VmkitError, to_body
from ...server import Server
from ..models import MAX_STDIN_BYTES, ExecRequest
from ..params import VmName
from ..responses import content

GuestPath = Annotated[str, Query(max_length=4096)]


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/vms/{name}/exec", responses=content("application/x-ndjson"))
    async def exec_vm(name: VmName, body: ExecRequest) -> StreamingResponse:
        """Run a command in the guest. Streams NDJSON lines: {"stdout": base64},
        {"stderr": base64}, and last {"exit_code": N}."""
        events = await server.core.guest.exec(name, body.argv, decode_stdin(body.stdin))
        return StreamingResponse(ndjson(events), media_type="application/x-ndjson")

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
    async def logs(name: VmName, follow: bool = False) -> StreamingResponse:
        """The VM's serial console output, kept on disk across restarts."""
        log = server.core.guest.log(name, follow)  # here: an unknown VM is a 404, not a cut stream
        return StreamingResponse(log, media_type="text/plain")

    return api


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


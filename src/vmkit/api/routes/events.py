"""/v1/events: what changes on the host, as server-sent events (the dashboard's feed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ...errors import NotFoundError
from ...server import Server
from ..responses import content

KEEPALIVE = 15.0  # seconds between comments on an idle event stream, so proxies keep it open


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/events", responses=content("text/event-stream"))
    async def events() -> StreamingResponse:
        """Server-sent events: first ``vms`` (the list of VMs), then ``vm`` ({"name", "vm"};
        vm is null once removed) each time a VM changes, and ``snapshots`` ({"vm"}) when a
        VM's snapshots change. Idle streams get a comment line every 15 s."""
        return StreamingResponse(event_stream(server), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    return api


async def event_stream(server: Server) -> AsyncIterator[bytes]:
    """The body of /v1/events; ends when the daemon stops (Changes.close)."""
    core = server.core
    with core.changes.subscribe() as queue:
        yield _sse("vms", core.list_vms())  # after subscribing, so no change falls between
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            changes = [first]
            while not queue.empty():  # a burst of changes: each VM once, as it is now
                changes.append(queue.get_nowait())
            for kind, name in dict.fromkeys(changes):
                if kind == "closed":
                    return
                if kind == "overflow":
                    yield _sse("vms", core.list_vms())
                elif kind == "vm":
                    yield _sse("vm", {"name": name, "vm": _vm_or_none(server, name)})
                else:
                    yield _sse(kind, {"vm": name})


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _vm_or_none(server: Server, name: str) -> dict[str, Any] | None:
    try:
        return server.core.get_vm(name)
    except NotFoundError:
        return None

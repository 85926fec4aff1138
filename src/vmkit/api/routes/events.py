"""/v1/events: what changes on the host, as server-sent events (the dashboard's feed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

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
    """The body of /v1/events (Registry.feed); ends when the daemon stops."""
    async for event in server.core.feed(KEEPALIVE):
        yield b": keepalive\n\n" if event is None else _sse(*event)


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

"""Live views of a VM through websockets: its serial console (on the core) and its VNC
display (on the display service), with the display's GET that tells where it is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ...errors import VmkitError
from ...server import Server
from ...spec import validate_name
from ..auth import accept
from ..models import VncDisplay
from ..params import VmName


def router(server: Server, token: str | None) -> APIRouter:
    """``token``: what each websocket must send (see auth.py); None: nothing."""
    api = APIRouter()

    @api.get("/v1/vms/{name}/display", response_model=VncDisplay)
    async def display(name: VmName) -> dict[str, Any]:
        """The VNC server of a VM run with display vnc: its socket on this host and its
        password (made for each QEMU process); browsers use the websocket ``/vnc``."""

        return await server.display.vnc(name)

    @api.websocket("/v1/vms/{name}/vnc")
    async def vnc_proxy(ws: WebSocket, name: str) -> None:
        """The VM's VNC server (RFB) in binary frames both ways, for noVNC."""

        if not await accept(ws, token):
            return
        try:
            validate_name(name)
            reader, writer = await server.display.open(name)
        except VmkitError as e:
            await ws.close(code=4000 + e.status, reason=e.message[:120])
            return

        async def to_client() -> None:
            while data := await reader.read(65536):
                await ws.send_bytes(data)
            await ws.close(code=1000, reason="the VNC server closed the connection")

        async def from_client(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await relay(ws, to_client, from_client)
        finally:
            writer.close()

    @api.websocket("/v1/vms/{name}/console")
    async def console(ws: WebSocket, name: str) -> None:
        """The serial console: binary frames both ways."""
        if not await accept(ws, token):
            return
        try:
            validate_name(name)
            hub = await server.core.guest.console(name)
        except VmkitError as e:
            await ws.close(code=4000 + e.status, reason=e.message[:120])
            return
        queue = await hub.attach()

        async def to_client() -> None:
            while (data := await queue.get()) is not None:
                await ws.send_bytes(data)
            await ws.close(code=1000, reason="the VM stopped")

        try:
            await relay(ws, to_client, hub.write)
        finally:
            hub.detach(queue)

    return api


async def relay(ws: WebSocket, to_client: Callable[[], Coroutine[Any, Any, None]],
                from_client: Callable[[bytes], Awaitable[None]]) -> None:
    """Run ``to_client`` and pass each frame the client sends to ``from_client``, until
    either side ends."""
    async def receive() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            await from_client(msg.get("bytes") or (msg.get("text") or "").encode())

    tasks = [asyncio.create_task(to_client()), asyncio.create_task(receive())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()

"""Any member answers for the whole cluster: a request about a VM that lives on another
member (``/v1/vms/NAME...``, found in the cluster's index) is passed on to that member,
with the cluster's token, and its answer streamed back as it comes (exec output, file
transfers, exports, logs); websockets (console, terminal, VNC) are relayed both ways. An
operation this host does not know (``/v1/operations/ID``, e.g. a stop that went on there)
is asked of the other members. ``GET /v1/vms?cluster=1`` lists every VM of the cluster
(as ``/v1/cluster/vms``).

A passed-on request carries ``X-Vmkit-Forwarded: HOST``: the member it reaches answers it
itself, so two members whose views of the index differ never pass a request back and forth.
An ASGI middleware that runs after the token check (websockets check theirs here).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from starlette.websockets import WebSocket
from starlette.websockets import WebSocketDisconnect as Gone
from wsproto.events import BytesMessage, TextMessage

from ..cluster import index, view
from ..cluster.membership import Membership
from ..errors import ClusterError, to_body
from ..server import Server
from .auth import accept
from .guards import App, Receive, Scope, Send

FORWARDED = b"x-vmkit-forwarded"
VM_PATH = re.compile(r"^/v1/vms/([A-Za-z0-9-]+)(?:/|$)")
OPERATION_PATH = re.compile(r"^/v1/operations/([A-Za-z0-9_-]+)$")
HOP = {b"host", b"authorization", b"content-length", b"transfer-encoding", b"connection",
       b"upgrade", b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-protocol",
       b"sec-websocket-extensions", FORWARDED}


class Forward:
    """Pass requests about other members' VMs on to them (see the module's text)."""

    def __init__(self, app: App, server: Server, token: str | None) -> None:
        self.app, self.server, self.token = app, server, token
        self._http: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        me = self.server.cluster
        if me is None or scope["type"] not in ("http", "websocket") or \
                any(k == FORWARDED for k, _ in scope["headers"]):
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/v1/vms" and scope.get("method") == "GET" and \
                b"cluster=1" in scope["query_string"].split(b"&"):
            return await self.app({**scope, "path": "/v1/cluster/vms", "raw_path":
                                   b"/v1/cluster/vms", "query_string": b""}, receive, send)
        try:
            urls = await self._owners(me, path)
        except ClusterError as e:  # etcd trouble (this host's own VMs were answered already)
            if scope["type"] == "http":
                return await _answer(send, e.status, to_body(e))
            urls = []
        if not urls:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await self._relay(scope, receive, send, urls[0], me)
        for url in urls[:-1]:  # an operation: the first member that knows it answers
            if await self._knows(url, scope, me):
                return await self._pass(scope, receive, send, url, me)
        return await self._pass(scope, receive, send, urls[-1], me)

    async def _knows(self, url: str, scope: Scope, me: Membership) -> bool:
        """Whether the member at ``url`` has the operation at this path."""
        try:
            answer = await self.http(me).get(url + scope["path"],
                                             headers=self._headers(scope, me))
        except httpx.TransportError:
            return False
        return answer.status_code != 404

    def http(self, me: Membership) -> httpx.AsyncClient:
        if self._http is None:  # long reads: exec and logs stream as long as they last
            self._http = httpx.AsyncClient(trust_env=False, verify=me.peer.verify(),
                                           timeout=httpx.Timeout(30.0, read=None, write=None))
        return self._http

    async def _owners(self, me: Membership, path: str) -> list[str]:
        """The URLs of the members to pass this request to: none if this host answers."""
        if match := VM_PATH.match(path):
            if self.server.core.store.vm(match[1]) is not None:
                return []
            entry = await index.lookup(me.etcd, match[1])
            if entry is None or entry.host == me.config.name:
                return []
            return [h["url"] for h in await view.hosts(me.etcd)
                    if h["name"] == entry.host and h["state"] != "down"]
        if (match := OPERATION_PATH.match(path)) and \
                self.server.core.store.operation(match[1]) is None:
            return [h["url"] for h in await view.hosts(me.etcd)
                    if h["name"] != me.config.name and h["state"] != "down"]
        return []

    def _headers(self, scope: Scope, me: Membership) -> list[tuple[bytes, bytes]]:
        return [*((k, v) for k, v in scope["headers"] if k not in HOP),
                (b"authorization", f"Bearer {me.token}".encode()),
                (FORWARDED, me.config.name.encode())]

    async def _pass(self, scope: Scope, receive: Receive, send: Send, url: str,
                    me: Membership) -> None:
        """Send the request on to ``url`` and stream its answer back."""
        query = scope["query_string"].decode()
        request = self.http(me).build_request(
            scope["method"], url + scope["path"] + (f"?{query}" if query else ""),
            headers=self._headers(scope, me), content=_body(receive))
        try:
            answer = await self.http(me).send(request, stream=True)
        except httpx.TransportError as e:
            error = ClusterError(f"cannot reach the VM's host at {url}: "
                                 f"{e or type(e).__name__}")
            return await _answer(send, 502, to_body(error))
        try:
            await send({"type": "http.response.start", "status": answer.status_code,
                        "headers": [(k, v) for k, v in answer.headers.raw
                                    if k.lower() not in (b"transfer-encoding", b"connection")]})
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await answer.aclose()

    async def _relay(self, scope: Scope, receive: Receive, send: Send, url: str,
                     me: Membership) -> None:
        """Accept the websocket here (checking its token), open one to ``url`` and pass the
        messages both ways until either side closes."""
        ws = WebSocket(scope, receive, send)
        if not await accept(ws, self.token):
            return
        query = scope["query_string"].decode()
        target = "ws" + url.removeprefix("http") + scope["path"] + (f"?{query}" if query else "")
        there: AsyncWebSocketSession
        try:
            async with aconnect_ws(target, self.http(me), subprotocols=["vmkit"],
                                   headers={k.decode(): v.decode() for k, v in
                                            self._headers(scope, me)[-2:]}) as there:
                code = await _pump(ws, there)
        except WebSocketDisconnect as e:
            code = e.code
        except Exception:  # noqa: BLE001 - the owner went away: say so with the close code
            code = 1011
        try:
            await ws.close(code=code)
        except RuntimeError:  # already closed by the client
            pass


async def _pump(ws: WebSocket, there: AsyncWebSocketSession) -> int:
    """Relay messages between ``ws`` (the caller) and ``there`` (the owner) until one side
    closes: the close code to give the caller."""

    async def up() -> int:
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return 1000
                if msg.get("bytes") is not None:
                    await there.send_bytes(msg["bytes"])
                elif msg.get("text") is not None:
                    await there.send_text(msg["text"])
        except Gone:
            return 1000

    async def down() -> int:
        try:
            while True:
                event = await there.receive()
                if isinstance(event, BytesMessage):
                    await ws.send_bytes(bytes(event.data))
                elif isinstance(event, TextMessage):
                    await ws.send_text(event.data)
        except WebSocketDisconnect as e:
            return e.code

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return next(iter(done)).result()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        if msg.get("body"):
            yield msg["body"]
        if not msg.get("more_body"):
            return


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})

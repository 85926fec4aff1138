"""What the API refuses at the door, before any route runs: a path that is not in its route's
exact form, and a body over its route's cap.

A name in a path is letters, digits and '-' (spec.NAME_RE), so a well-formed path never needs
percent-encoding, dot segments or empty segments. Without this check, ``/v1/vms/a%2Fsnapshots%2Fb``
would be decoded into another route's path, and a client that joins names into URLs
unencoded would act on other VMs (``../../victim``).

Bodies are read into memory by the JSON routes, so each route has a cap; the two upload routes
stream to disk or into the guest and have none. A body over its cap is answered 413 before it
is parsed, whether or not it declared its length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import NotFoundError, TooLargeError, VmkitError, to_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

KIB, MIB = 1 << 10, 1 << 20
DEFAULT_CAP = 64 * KIB
# (method, path pattern, cap in bytes or None for a streamed upload), first match wins.
CAPS: tuple[tuple[str, re.Pattern[str], int | None], ...] = (
    ("PUT", re.compile(r"/v1/vms/[^/]+/files"), None),  # streamed into the guest
    ("POST", re.compile(r"/v1/imports"), None),  # streamed to disk
    ("POST", re.compile(r"/v1/images/[^/]+/receive"), None),  # streamed to disk
    ("POST", re.compile(r"/v1/vms"), 4 * MIB),  # user_data (1 MiB), ssh keys, env
    ("POST", re.compile(r"/v1/migrations"), 4 * MIB),  # a spec, with its user_data
    ("POST", re.compile(r"/v1/vms/[^/]+/exec"), 2 * MIB),  # stdin (1 MiB, as base64) + argv
)
_CLEAN_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*/?")


def body_cap(method: str, path: str) -> int | None:
    """The most bytes a request body may have on this route; None: no cap (streamed)."""
    for m, pattern, cap in CAPS:
        if m == method and pattern.fullmatch(path):
            return cap
    return DEFAULT_CAP


def path_problem(raw_path: bytes) -> str | None:
    """Why this raw request path can match no route as sent, or None if it is well formed."""
    path = raw_path.decode("latin-1")
    if not _CLEAN_PATH.fullmatch(path) or "//" in path:
        return ("it has characters that no route takes (names are letters, digits and '-'; "
                "nothing in a path is percent-encoded)")
    if any(seg in (".", "..") for seg in path.split("/")):
        return "it has '.' or '..' segments"
    return None


class Guards:
    """ASGI middleware: refuses malformed paths (404) and oversized bodies (413)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path") or scope["path"].encode()
        if (why := path_problem(raw)) is not None:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 4404, "reason": why})
            # Read what was sent first (within the usual cap): a client still sending its body
            # would see the connection reset instead of this answer.
            drained = await _read_body(scope, receive, DEFAULT_CAP) is not None
            return await _answer(send, close=not drained, error=NotFoundError(
                f"no route for the path {raw.decode('latin-1')[:200]!r}: {why}; see /docs "
                "for the API"))
        if scope["type"] == "http" and (cap := body_cap(scope["method"], scope["path"])):
            body = await _read_body(scope, receive, cap)
            if body is None:
                return await _answer(send, close=True, error=TooLargeError(
                    f"the request body is larger than {_size(cap)}, the most "
                    f"{scope['method']} {scope['path']} takes"))
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


async def _read_body(scope: Scope, receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None as soon as it is over ``cap`` (declared or received)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length" and value.isdigit() and int(value) > cap:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: a disconnect, when the client goes

    return replay


async def _answer(send: Send, error: VmkitError, close: bool) -> None:
    body = json.dumps(to_body(error)).encode()
    await send({"type": "http.response.start", "status": error.status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *([(b"connection", b"close")] if close else [])]})
    await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"

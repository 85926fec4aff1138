"""The bearer token of the TCP listener.

Every request needs ``Authorization: Bearer <token>``, except the dashboard's static files
under ``/ui/`` and the API's description (``/openapi.json``, ``/docs``, ``/redoc``): they
hold no data (each data call the dashboard makes sends the token), and client generators and
people reading the docs need the schema before they have a token. Browsers cannot
set headers on a WebSocket, so websockets also take the token as the subprotocol
``bearer.<token>`` offered next to ``vmkit`` (which the server accepts).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from fastapi import Request, Response, WebSocket
from fastapi.responses import JSONResponse

from ..errors import UnauthorizedError, to_body

log = logging.getLogger("vmkit.api")
CallNext = Callable[[Request], Awaitable[Response]]


def token_middleware(token: str) -> Callable[[Request, CallNext], Awaitable[Response]]:
    """HTTP middleware that answers 401 to a request without ``token``."""

    async def require_token(request: Request, call_next: CallNext) -> Response:
        if public(request.url.path):
            return await call_next(request)
        if not token_ok(request.headers.get("authorization", ""), token):
            log.warning("refused %s %s from %s: bad or missing token", request.method,
                        request.url.path, request.client.host if request.client else "?")
            return JSONResponse(to_body(UnauthorizedError(
                "a valid token is required: send 'Authorization: Bearer <token>'")), 401)
        return await call_next(request)

    return require_token


async def accept(ws: WebSocket, token: str | None) -> bool:
    """Accept the websocket, then check the token: False, and closed with code 4401 (which
    the client can show, unlike a refused handshake), when it is wrong."""
    offered = list(ws.scope.get("subprotocols") or [])
    await ws.accept(subprotocol="vmkit" if "vmkit" in offered else None)
    if token is None or token_ok(ws.headers.get("authorization", ""), token):
        return True
    sent = [p.removeprefix("bearer.") for p in offered if p.startswith("bearer.")]
    if any(token_ok(f"Bearer {s}", token) for s in sent):
        return True
    await ws.close(code=4401, reason="a valid token is required")
    return False


PUBLIC = ("/", "/ui", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


def public(path: str) -> bool:
    """The dashboard's static files, the redirect to them and the API's description: no
    data, no token."""
    return path in PUBLIC or path.startswith("/ui/")


def token_ok(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              token.encode())

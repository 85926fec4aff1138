"""A small asyncio client of etcd v3 (3.4) through its JSON gateway: put, get, range, delete,
transactions, leases (grant, keep-alive, revoke) and watches.

Why our own, over httpx: vmkitd is asyncio and already depends on httpx; the gateway is a
handful of POSTs with base64 keys and values. etcd3gw is synchronous and brings requests,
futurist and pbr; aetcd brings gRPC and protobuf (the old etcd3 package broke on protobuf 4).

Every failure is a ClusterError with one line that says which of the two it is: no member
answers (etcd is down or the URL is wrong), or members answer without a leader (quorum
lost). Requests go to the member that answered last, then to the others in turn.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import ClusterError, InvalidInputError

TIMEOUT = 3.0  # seconds for one request: a member without a leader holds requests ~5 s
# Gateway errors that mean "this member has no leader or cannot reach a majority".
NO_QUORUM = ("no leader", "timed out", "leader changed", "not capable", "too many requests")


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text or "")


def prefix_end(prefix: str) -> str:
    """The range_end that makes a range request cover every key starting with ``prefix``."""
    raw = prefix.encode()
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


def check_endpoints(text: str) -> list[str]:
    """``URL[,URL...]`` as a list of http(s)://HOST:PORT, or an InvalidInputError."""
    urls = [u.strip().rstrip("/") for u in text.split(",") if u.strip()]
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise InvalidInputError(f"etcd URL {url!r}: use http(s)://ADDR:PORT[,...], e.g. "
                                    "http://10.0.0.5:2379 (an etcd member's client URL)")
    if not urls:
        raise InvalidInputError("give at least one etcd URL, e.g. --cluster http://10.0.0.5:2379")
    return urls


@dataclass(frozen=True)
class Tls:
    """etcd's own TLS: the CA that signed its certificates, and a client certificate."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction: ``target`` ("VALUE", "VERSION", "CREATE", "MOD") of
    ``key`` compared (``result``: "EQUAL", "NOT_EQUAL", "GREATER", "LESS") with ``value``."""

    key: str
    target: str
    value: str | int | bytes
    result: str = "EQUAL"
    prefix: bool = False  # compare every key under ``key``

    def body(self) -> dict[str, Any]:
        field = {"VALUE": "value", "VERSION": "version", "CREATE": "create_revision",
                 "MOD": "mod_revision"}[self.target]
        value = _b64(self.value) if self.target == "VALUE" else str(self.value)  # type: ignore[arg-type]
        extra = {"range_end": prefix_end(self.key)} if self.prefix else {}
        return {"key": _b64(self.key), "target": self.target, "result": self.result,
                field: value, **extra}


def put_op(key: str, value: bytes | str, lease: int = 0) -> dict[str, Any]:
    """A put, as one operation of a transaction."""
    return {"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


class Etcd:
    """The etcd cluster at ``endpoints`` (client URLs of its members)."""

    def __init__(self, endpoints: list[str], tls: Tls | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.endpoints = list(endpoints)
        tls = tls or Tls()
        verify: Any = tls.ca or True
        cert = (tls.cert, tls.key) if tls.cert and tls.key else None
        self._http = httpx.AsyncClient(timeout=timeout, verify=verify, cert=cert,
                                       trust_env=False)
        self._good = 0  # index of the member that answered last

    async def close(self) -> None:
        await self._http.aclose()

    # --- the gateway ---------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to /v3/``path`` on a member that answers with a leader."""
        n = len(self.endpoints)
        unreachable: list[str] = []
        leaderless: list[str] = []
        for i in range(n):
            url = self.endpoints[(self._good + i) % n]
            try:
                response = await self._http.post(f"{url}/v3/{path}", json=body)
            except httpx.TimeoutException:
                leaderless.append(url)
                continue
            except httpx.TransportError:
                unreachable.append(url)
                continue
            answer = _json(response)
            error = str(answer.get("error") or answer.get("message") or "")
            if response.status_code >= 400 or error:
                if any(word in error for word in NO_QUORUM) or response.status_code == 503:
                    leaderless.append(url)
                    continue
                raise ClusterError(f"etcd at {url} refused {path}: {error or response.text[:200]}")
            self._good = (self._good + i) % n
            return answer
        raise _failure(unreachable, leaderless)

    async def put(self, key: str, value: bytes | str, lease: int = 0) -> None:
        await self.call("kv/put", {"key": _b64(key), "value": _b64(value), "lease": str(lease)})

    async def get(self, key: str) -> bytes | None:
        kvs = (await self.call("kv/range", {"key": _b64(key)})).get("kvs") or []
        return _unb64(kvs[0].get("value", "")) if kvs else None

    async def range(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` with its value, in key order."""
        return (await self.range_at(prefix))[0]

    async def range_at(self, prefix: str) -> tuple[dict[str, bytes], int]:
        """``range``, with the store's revision it was read at (for a transaction that must
        fail if anything under ``prefix`` changed since)."""
        answer = await self.call("kv/range", {"key": _b64(prefix),
                                              "range_end": prefix_end(prefix)})
        return ({_unb64(kv["key"]).decode(): _unb64(kv.get("value", ""))
                 for kv in answer.get("kvs") or []},
                int((answer.get("header") or {}).get("revision", 0)))

    async def delete(self, key: str, prefix: bool = False) -> int:
        body = {"key": _b64(key), **({"range_end": prefix_end(key)} if prefix else {})}
        return int((await self.call("kv/deleterange", body)).get("deleted", 0))

    async def txn(self, compare: list[Compare], success: list[dict[str, Any]],
                  failure: list[dict[str, Any]] | None = None) -> bool:
        """Run ``success`` if every comparison holds, else ``failure``; True if it held."""
        answer = await self.call("kv/txn", {"compare": [c.body() for c in compare],
                                            "success": success, "failure": failure or []})
        return bool(answer.get("succeeded"))

    async def put_if_absent(self, key: str, value: bytes | str, lease: int = 0) -> bool:
        """Put ``key`` only if it does not exist; False if it did."""
        return await self.txn([Compare(key, "CREATE", 0)], [put_op(key, value, lease)])

    # --- leases --------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        return int((await self.call("lease/grant", {"TTL": str(ttl)}))["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew ``lease`` once; its remaining TTL in seconds, 0 if it has expired."""
        answer = await self.call("lease/keepalive", {"ID": str(lease)})
        return int((answer.get("result") or answer).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self.call("lease/revoke", {"ID": str(lease)})

    # --- watches -------------------------------------------------------------------------

    async def watch(self, prefix: str) -> AsyncIterator[tuple[str, str, bytes]]:
        """Changes under ``prefix`` from now on, as (type "PUT"/"DELETE", key, value)."""
        body = {"create_request": {"key": _b64(prefix), "range_end": prefix_end(prefix)}}
        url = self.endpoints[self._good]
        try:
            async with self._http.stream("POST", f"{url}/v3/watch", json=body,
                                         timeout=httpx.Timeout(TIMEOUT, read=None)) as stream:
                async for line in stream.aiter_lines():
                    for event in (_json_text(line).get("result") or {}).get("events") or []:
                        kv = event.get("kv") or {}
                        yield (event.get("type", "PUT"), _unb64(kv.get("key", "")).decode(),
                               _unb64(kv.get("value", "")))
        except httpx.TransportError as e:
            raise ClusterError(f"the watch on etcd at {url} broke off ({e or 'closed'})") from e


def _json(response: httpx.Response) -> dict[str, Any]:
    return _json_text(response.text)


def _json_text(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _failure(unreachable: list[str], leaderless: list[str]) -> ClusterError:
    if leaderless:
        return ClusterError(f"etcd has lost quorum ({', '.join(leaderless)} answered without a "
                            "leader): cluster operations work again once a majority of its "
                            "members is back")
    return ClusterError(f"cannot reach etcd at {', '.join(unreachable)}: is etcd running there, "
                        "and is that its client URL?")

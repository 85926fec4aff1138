"""Other vmkit hosts this one knows, by name: their API's URL, token and, for TLS with a
certificate of their own, the CA to trust. ``vmkit --host NAME`` and migrations use them.

Kept in VMKIT_HOME/hosts.json, private to the user since it holds tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import InvalidInputError, NotFoundError, error_from_body
from .paths import HomePaths, atomic_write
from .spec import validate_name

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    token: str
    ca: str | None = None  # PEM file of the CA that signed the peer's certificate


def load(paths: HomePaths) -> dict[str, Peer]:
    try:
        data = json.loads(paths.hosts.read_text())
    except FileNotFoundError:
        return {}
    return {name: Peer(name=name, **fields) for name, fields in data.items()}


def _save(paths: HomePaths, peers: dict[str, Peer]) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    data = {p.name: {k: v for k, v in asdict(p).items() if k != "name"} for p in peers.values()}
    atomic_write(paths.hosts, json.dumps(data, indent=1).encode(), 0o600)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None \
            or parts.path not in ("", "/"):
        raise InvalidInputError(f"host URL {url!r}: use http(s)://ADDR:PORT, the address "
                                "a 'vmkitd --listen ADDR:PORT' serves")
    return url.rstrip("/")


def peer(name: str, url: str, token: str, ca: Path | None = None) -> Peer:
    """A validated Peer (not yet saved)."""
    validate_name(name, "host")
    if not token.strip():
        raise InvalidInputError("give the host's token with --token (on that host: "
                                "'vmkit host token')")
    if ca is not None and not ca.is_file():
        raise InvalidInputError(f"CA file {ca} does not exist")
    return Peer(name, check_url(url), token.strip(), str(ca.resolve()) if ca else None)


def add(paths: HomePaths, new: Peer) -> None:
    peers = load(paths)
    peers[new.name] = new
    _save(paths, peers)


def get(paths: HomePaths, name: str) -> Peer:
    found = load(paths).get(name)
    if found is None:
        raise NotFoundError(f"no host named {name!r}; 'vmkit host ls' lists them, "
                            "'vmkit host add' adds one")
    return found


def remove(paths: HomePaths, name: str) -> None:
    peers = load(paths)
    if peers.pop(name, None) is None:
        raise NotFoundError(f"no host named {name!r}; 'vmkit host ls' lists them")
    _save(paths, peers)


def answer(response: httpx.Response, where: str) -> Any:
    """Another host's answer as JSON (None if it is empty); an error answer is raised as its
    vmkit error, the message led by ``where`` (e.g. "the destination URL refused")."""
    if response.status_code >= 400:
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {"message": response.text[:200]}
        error = error_from_body(body)
        error.message = f"{where}: {error.message}"
        raise error
    return response.json() if response.content else None

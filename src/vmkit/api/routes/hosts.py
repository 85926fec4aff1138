"""Hosts: this one (/v1/info) and the other vmkit hosts registered here (/v1/hosts)."""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter
from pydantic import Field

from ... import hosts
from ...errors import ConflictError, InvalidInputError
from ...paths import HomePaths, atomic_write
from ...server import Server
from ...core.usage import host_usage
from ...spec import validate_name
from ..models import Body, HostInfo, HostUsage, RemoteHost
from ..params import NamePath

CHECK_TIMEOUT = 10.0  # seconds a host being added has to answer


class HostAdd(Body):
    """Another vmkit host to register ('vmkit host add NAME URL --token TOKEN [--ca PEM]')."""
    name: str = Field(max_length=63)
    url: str = Field(max_length=2048, description="its API: http(s)://ADDR:PORT")
    token: str = Field(max_length=512, description="its token ('vmkit host token' there)")
    ca: str | None = Field(None, max_length=65536, description="the PEM text of the CA that "
                           "signed its TLS certificate, if not a public one")


def router(server: Server, ui_url: str | None) -> APIRouter:
    """``ui_url``: where the dashboard is served, which /v1/info tells."""
    api = APIRouter()

    @api.get("/v1/info", response_model=HostInfo)
    async def info() -> dict[str, Any]:
        return {**server.core.info(), "ui": ui_url}

    @api.get("/v1/info/usage", response_model=HostUsage)
    async def usage() -> dict[str, Any]:
        """CPU, memory and disk of this host, used of total (the dashboard's host summary)."""
        return await host_usage(server.core.paths.root, server.core.store.vms())

    @api.get("/v1/hosts", response_model=list[RemoteHost])
    async def list_hosts() -> list[dict[str, Any]]:
        """The other vmkit hosts registered here ('vmkit host add'), without their tokens:
        where the dashboard can migrate VMs to."""
        return server.core.peers()

    @api.post("/v1/hosts", response_model=RemoteHost, status_code=201)
    async def add_host(body: HostAdd) -> dict[str, str]:
        """Register another vmkit host, once it answered at ``url`` and took ``token``, as
        'vmkit host add' checks. A name already registered is refused: remove it first."""
        paths = server.core.paths
        peer = hosts.peer(body.name, body.url, body.token)
        if peer.name in hosts.load(paths):
            raise ConflictError(f"host {peer.name} is already registered; remove it first "
                                "to change its URL or token")
        await check_peer(peer, trust(body.ca))
        if body.ca:
            pem = _ca_file(paths, peer.name)
            pem.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(pem, body.ca.encode(), 0o644)
            peer = replace(peer, ca=str(pem))
        hosts.add(paths, peer)
        return {"name": peer.name, "url": peer.url}

    @api.delete("/v1/hosts/{name}", status_code=204)
    async def remove_host(name: Annotated[str, NamePath]) -> None:
        """Forget a registered host (nothing changes on it), as 'vmkit host rm'."""
        paths = server.core.paths
        hosts.remove(paths, validate_name(name, "host"))
        _ca_file(paths, name).unlink(missing_ok=True)

    return api


def _ca_file(paths: HomePaths, name: str) -> Path:
    """Where the CA a host was added with from the API is kept (the CLI's stays where it is)."""
    return paths.root / "hosts-ca" / f"{name}.pem"


def trust(ca: str | None) -> ssl.SSLContext | bool:
    """What to verify a host's TLS with: the system's CAs, or only ``ca`` (PEM text)."""
    if not ca:
        return True
    try:
        return ssl.create_default_context(cadata=ca)
    except (ssl.SSLError, ValueError):
        raise InvalidInputError("the CA is not a PEM certificate: give the text of the CA "
                                "file that signed the host's TLS certificate") from None


async def check_peer(peer: hosts.Peer, verify: ssl.SSLContext | bool) -> None:
    """That ``peer`` answers as a vmkitd and takes its token; else one sentence why not."""
    try:
        async with httpx.AsyncClient(trust_env=False, verify=verify,
                                     timeout=CHECK_TIMEOUT) as http:
            answer = await http.get(f"{peer.url}/v1/info",
                                    headers={"authorization": f"Bearer {peer.token}"})
    except httpx.HTTPError as e:
        raise InvalidInputError(f"{peer.url} does not answer ({e or type(e).__name__}); "
                                "check the address its 'vmkitd --listen' serves, and for TLS "
                                "with a certificate of its own, give its CA") from None
    if answer.status_code == 401:
        raise InvalidInputError(f"{peer.url} refused the token; copy it from "
                                "'vmkit host token' on that host")
    try:
        vmkitd = answer.status_code == 200 and "pid" in answer.json()
    except ValueError:  # not JSON
        vmkitd = False
    if not vmkitd:
        raise InvalidInputError(f"{peer.url} answered {answer.status_code} but is not a "
                                "vmkitd API; give the address its 'vmkitd --listen' serves")

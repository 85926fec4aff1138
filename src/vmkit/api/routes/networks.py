"""/v1/networks: private networks, on the networks service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...server import Server
from ..models import Network, NetworkCreate
from ..params import NetworkName


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/networks", response_model=list[Network])
    async def list_networks() -> list[dict[str, Any]]:
        return server.networks.all()

    @api.post("/v1/networks", response_model=Network, status_code=201)
    async def create_network(body: NetworkCreate) -> dict[str, Any]:
        """A private network: a bridge with DHCP and DNS for its VMs (needs vmkitd as root)."""
        return server.networks.create(body.name, body.subnet, body.isolated)

    @api.get("/v1/networks/{name}", response_model=Network)
    async def get_network(name: NetworkName) -> dict[str, Any]:
        return server.networks.describe(server.networks.get(name))

    @api.delete("/v1/networks/{name}", status_code=204)
    async def remove_network(name: NetworkName) -> None:
        """Remove a network no VM uses."""
        server.networks.remove(name)

    return api

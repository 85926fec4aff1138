"""/v1/forks: new VMs from memory snapshots, on the snapshots service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...server import Server
from ..models import ForkCreate, Vm


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/forks", response_model=Vm, status_code=201)
    async def fork(body: ForkCreate) -> dict[str, Any]:
        """A new running VM from a memory snapshot; answers once it has its own identity."""
        return await server.snapshots.fork(body.source, body.name, body.ports, body.network,
                                           body.auto_remove)

    return api

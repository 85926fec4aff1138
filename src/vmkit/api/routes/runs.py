"""/v1/runs: what ``vmkit run`` does, as an operation, on the run service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...core.request import VmRequest
from ...server import Server
from ...services.run import RunRequest
from ..models import Operation, RunCreate


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/runs", response_model=Operation, status_code=202)
    async def run(body: RunCreate) -> dict[str, Any]:
        """Build the image if this host lacks it, then boot a new VM, or fork one
        (``source``, ``fast``); the request is checked before this answers. Follow the
        operation (kind "run", target: the VM's name) to its end; DELETE it to call the run
        off (nothing of the VM is left)."""
        vm = VmRequest(**{**body.model_dump(exclude={"source", "fast"}), "name": body.name or ""})
        return server.runs.start(RunRequest(vm, body.source, body.fast))

    return api

"""VMs' counters: one VM's as JSON, every VM's for Prometheus; on the stats service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ...server import Server
from ...services.stats import prometheus
from ..models import VmStats
from ..params import VmName
from ..responses import content


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/vms/{name}/stats", response_model=VmStats)
    async def vm_stats(name: VmName) -> dict[str, Any]:
        """CPU, memory, disk and network counters of the VM (those of a running one)."""
        return await server.stats.of(name)

    @api.get("/metrics", responses=content("text/plain"))
    async def metrics() -> Response:
        """Every VM's counters, and the backup schedules', in Prometheus' text format."""
        return Response(prometheus(await server.stats.all()) + server.backups.metrics(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    return api

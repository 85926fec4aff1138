"""/v1/templates: snapshots that forks start from, on the snapshots service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...server import Server
from ..models import FastTemplate, Template, TemplateCreate
from ..params import TemplateName


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/templates", response_model=list[Template])
    async def list_templates() -> list[dict[str, Any]]:
        return server.snapshots.list_templates()

    @api.post("/v1/templates", response_model=Template, status_code=201)
    async def create_template(body: TemplateCreate) -> dict[str, Any]:
        return await server.snapshots.create_template(body.name, body.source)

    @api.post("/v1/templates/fast", response_model=Template)
    async def fast_template(body: FastTemplate) -> dict[str, Any]:
        """The template 'vmkit run --fast' forks, made on first use (boot once, snapshot)."""
        return await server.snapshots.ensure_fast_template(body.image, body.cpus, body.memory,
                                                           body.network)

    @api.get("/v1/templates/{name}", response_model=Template)
    async def get_template(name: TemplateName) -> dict[str, Any]:
        return server.snapshots.get_template(name)

    @api.delete("/v1/templates/{name}", status_code=204)
    async def remove_template(name: TemplateName) -> None:
        server.snapshots.remove_template(name)

    return api

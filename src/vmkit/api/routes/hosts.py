"""Hosts: this one (/v1/info) and the other vmkit hosts registered here (/v1/hosts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...server import Server
from ..models import HostInfo, RemoteHost


def router(server: Server, ui_url: str | None) -> APIRouter:
    """``ui_url``: where the dashboard is served, which /v1/info tells."""
    api = APIRouter()

    @api.get("/v1/info", response_model=HostInfo)
    async def info() -> dict[str, Any]:
        return {**server.core.info(), "ui": ui_url}

    @api.get("/v1/hosts", response_model=list[RemoteHost])
    async def list_hosts() -> list[dict[str, Any]]:
        """The other vmkit hosts registered here ('vmkit host add'), without their tokens:
        where the dashboard can migrate VMs to."""
        return server.core.peers()

    return api

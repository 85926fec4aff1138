"""/v1/vms/{name}/snapshots: a VM's snapshots, on the snapshots service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...server import Server
from ..models import Snapshot, SnapshotCreate, Vm
from ..params import SnapshotName, VmName


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/vms/{name}/snapshots", response_model=list[Snapshot])
    async def list_snapshots(name: VmName) -> list[dict[str, Any]]:
        """The VM's snapshots, oldest first; ``parent`` links make the tree."""
        return server.snapshots.of_vm(name)

    @api.post("/v1/vms/{name}/snapshots", response_model=Snapshot, status_code=201)
    async def create_snapshot(name: VmName, body: SnapshotCreate) -> dict[str, Any]:
        """Snapshot the disk, and memory + devices of a running VM (paused only for the save)."""
        return await server.snapshots.create(name, body.name, body.memory)

    @api.get("/v1/vms/{name}/snapshots/{snap}", response_model=Snapshot)
    async def get_snapshot(name: VmName, snap: SnapshotName) -> dict[str, Any]:
        return server.snapshots.get(name, snap)

    @api.post("/v1/vms/{name}/snapshots/{snap}/restore", response_model=Vm)
    async def restore_snapshot(name: VmName, snap: SnapshotName) -> dict[str, Any]:
        """Bring the VM back to the snapshot: disk, and memory if it has one."""
        return await server.snapshots.restore(name, snap)

    @api.delete("/v1/vms/{name}/snapshots/{snap}", status_code=204)
    async def remove_snapshot(name: VmName, snap: SnapshotName) -> None:
        await server.snapshots.remove(name, snap)

    return api

"""/v1/vms: a VM's lifecycle (create, start, stop, ..., remove), on the core's registry
(list, get) and lifecycle (the rest)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from ...core.request import VmRequest
from ...server import Server
from ..models import Vm, VmCreate, VmResize, VmUpdate
from ..params import VmName

Timeout = Annotated[float, Query(gt=0, le=3600)]
# Start of a running VM, stop or kill of one that is down: nothing to do, as docker answers.
UNCHANGED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the VM was in that state already (nothing done; "
                         "a stop or kill calls off an automatic restart that waits)"}}


def _unless_unchanged(vm: dict[str, Any] | None) -> dict[str, Any] | Response:
    return vm if vm is not None else Response(status_code=304)


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/vms", response_model=list[Vm])
    async def list_vms() -> list[dict[str, Any]]:
        return server.core.list_vms()

    @api.post("/v1/vms", response_model=Vm, status_code=201)
    async def create_vm(body: VmCreate) -> dict[str, Any]:
        """Create a VM and boot it; answers when the guest agent is ready."""
        return await server.core.vms.create_from(VmRequest(**body.model_dump()))

    @api.get("/v1/vms/{name}", response_model=Vm)
    async def get_vm(name: VmName) -> dict[str, Any]:
        return server.core.get_vm(name)

    @api.delete("/v1/vms/{name}", status_code=204)
    async def remove_vm(name: VmName, force: bool = False) -> None:
        """Remove a stopped VM and its disk; force=true kills a running one first."""
        await server.core.vms.remove(name, force)

    @api.patch("/v1/vms/{name}", response_model=Vm)
    async def update_vm(name: VmName, body: VmUpdate) -> dict[str, Any]:
        """Change a VM in any state: its restart policy (docker's update)."""
        return await server.core.vms.update(name, body.restart)

    @api.post("/v1/vms/{name}/start", response_model=Vm, responses=UNCHANGED)
    async def start_vm(name: VmName) -> dict[str, Any] | Response:
        return _unless_unchanged(await server.core.vms.start(name))

    @api.post("/v1/vms/{name}/stop", response_model=Vm, responses=UNCHANGED)
    async def stop_vm(name: VmName, timeout: Timeout = 20.0) -> dict[str, Any] | Response:
        """Shut down through the guest agent (or ACPI), then force it after ``timeout`` s."""
        return _unless_unchanged(await server.core.vms.stop(name, timeout))

    @api.post("/v1/vms/{name}/resize", response_model=Vm)
    async def resize_vm(name: VmName, body: VmResize) -> dict[str, Any]:
        """New CPUs, memory and/or a bigger disk for a stopped VM."""
        return await server.core.vms.resize(name, body.cpus, body.memory, body.disk)

    @api.post("/v1/vms/{name}/kill", response_model=Vm, responses=UNCHANGED)
    async def kill_vm(name: VmName) -> dict[str, Any] | Response:
        return _unless_unchanged(await server.core.vms.kill(name))

    @api.post("/v1/vms/{name}/restart", response_model=Vm)
    async def restart_vm(name: VmName, timeout: Timeout = 20.0) -> dict[str, Any]:
        return await server.core.vms.restart(name, timeout)

    @api.post("/v1/vms/{name}/pause", response_model=Vm)
    async def pause_vm(name: VmName) -> dict[str, Any]:
        return await server.core.vms.pause(name)

    @api.post("/v1/vms/{name}/resume", response_model=Vm)
    async def resume_vm(name: VmName) -> dict[str, Any]:
        return await server.core.vms.resume(name)

    return api

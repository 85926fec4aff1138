"""A VM as one file: /v1/vms/{name}/export and /v1/imports, on the portable service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from ...server import Server
from ...spec import validate_name
from ..models import NAME_SCHEMA, ExportRequest, Vm
from ..params import VmName
from ..responses import binary_body, content, download

NameQuery = Query(json_schema_extra=NAME_SCHEMA)


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/vms/{name}/export", responses=content("application/x-tar"))
    async def export_vm(name: VmName, body: ExportRequest) -> StreamingResponse:
        """The VM as one portable file (a tar archive), streamed; the VM keeps running."""
        export = await server.portable.export(name, body.format, body.memory, body.directory)
        return download(export, "application/x-tar")

    @api.post("/v1/imports", response_model=Vm, status_code=201, openapi_extra=binary_body())
    async def import_vm(request: Request,
                        name: Annotated[str | None, NameQuery] = None,
                        image: Annotated[str | None, NameQuery] = None,
                        port: Annotated[list[str] | None, Query(max_length=64)] = None,
                        filename: Annotated[str, Query(max_length=255)] = "") -> dict[str, Any]:
        """Make a VM of the request body: a vmkit export (it comes back as it was exported),
        an OVA, or a plain disk image whose whole device is an ext4 root filesystem (booted
        with IMAGE's kernel, tiny by default). ``port``: forwards instead of the exported ones."""
        for value, what in ((name, "VM"), (image, "image")):  # before a byte is received
            if value is not None:
                validate_name(value, what)
        upload = await server.portable.receive(request.stream())
        return await server.portable.import_file(upload, name, image, port, filename)

    return api

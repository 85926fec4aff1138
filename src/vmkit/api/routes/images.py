"""/v1/images and the operations that build or import them, on the core's image part."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from ...images.debian import debian_options
from ...server import Server
from ..models import Image, ImageImport, Operation
from ..params import ImageName, OperationId
from ..responses import binary_body


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/images", response_model=list[Image])
    async def list_images() -> list[dict[str, Any]]:
        return server.core.image_ops.all()

    @api.get("/v1/images/{name}", response_model=Image)
    async def get_image(name: ImageName) -> dict[str, Any]:
        return server.core.image_ops.get(name)

    @api.post("/v1/images/{name}/build", response_model=Operation, status_code=202)
    async def build_image(
            name: ImageName, force: bool = False,
            builder: Annotated[Literal["tiny", "debian"] | None, Query(
                description="what to build; by default the builder named like the image")] = None,
            release: Annotated[str, Query(max_length=32, description="debian: the release")
                               ] = "bookworm",
            size: Annotated[str, Query(max_length=32, description="debian: the disk size")
                            ] = "4G",
            packages: Annotated[str, Query(max_length=4096, description="debian: more "
                                           "packages, comma-separated")] = "",
            minimal: Annotated[bool, Query(description="debian: without ssh and cloud-init "
                                           "(a quick build that boots to the agent)")] = False,
    ) -> dict[str, Any]:
        """Start building an image; follow the returned operation for progress."""
        options = debian_options(release, size, packages, minimal)
        return server.core.image_ops.build(name, force, builder, options)

    @api.post("/v1/images/{name}/import", response_model=Operation, status_code=202)
    async def import_image(name: ImageName, body: ImageImport) -> dict[str, Any]:
        """Start importing a disk (qcow2, raw, vmdk, vdi) or ISO file on this host as an
        image; follow the returned operation for progress."""
        return server.core.image_ops.import_file(name, body.path)

    @api.post("/v1/images/{name}/receive", response_model=Image, status_code=201,
              openapi_extra=binary_body())
    async def receive_image(name: ImageName, request: Request,
                            digest: Annotated[str, Query(pattern="^[0-9a-f]{64}$")]
                            ) -> dict[str, Any]:
        """(Between vmkit hosts) store the image in the body, a sparse tar of its manifest
        (image.json) and files, as another host has it under ``digest``; a migration brings a
        VM's base image so."""
        return await server.core.image_ops.receive(name, digest, request.stream())

    @api.delete("/v1/images/{name}", status_code=204)
    async def remove_image(name: ImageName) -> None:
        server.core.image_ops.remove(name)

    @api.get("/v1/operations", response_model=list[Operation])
    async def list_operations(limit: Annotated[int, Query(ge=1, le=500)] = 100
                              ) -> list[dict[str, Any]]:
        """The latest operations (builds, imports, runs, migrations), newest first."""
        return server.core.operations(limit)

    @api.get("/v1/operations/{op_id}", response_model=Operation)
    async def get_operation(op_id: OperationId) -> dict[str, Any]:
        return server.core.operation(op_id)

    @api.delete("/v1/operations/{op_id}", response_model=Operation, status_code=202)
    async def cancel_operation(op_id: OperationId) -> dict[str, Any]:
        """Cancel a running image build or import; nothing of it is stored."""
        return server.core.cancel_operation(op_id)

    return api

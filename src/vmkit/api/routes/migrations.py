"""Live migration, on the migrations service: the source's /v1/vms/{name}/migrate, and the
destination's /v1/migrations that the source calls."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...errors import InvalidInputError
from ...server import Server
from ..models import (FinishMigration, IncomingMigration, IncomingReady, MemoryDigest,
                      MigrateRequest, Operation, Vm)
from ..params import VmName


def router(server: Server) -> APIRouter:
    api = APIRouter()

    # --- the source ----------------------------------------------------------------------

    @api.post("/v1/vms/{name}/migrate", response_model=Operation, status_code=202)
    async def migrate(name: VmName, body: MigrateRequest) -> dict[str, Any]:
        """Move the running VM to another vmkit host, given by URL and token or by the name
        it is registered under here ('vmkit host add'); follow the returned operation."""
        peer = server.migrations.peer(body.host, body.url, body.token, body.ca)
        return server.migrations.start(name, peer, body.postcopy, body.verify, body.watch,
                                       body.ports)

    @api.delete("/v1/vms/{name}/migrate", status_code=204)
    async def cancel_migration(name: VmName) -> None:
        """Call off the VM's migration; it keeps running here."""
        server.migrations.cancel(name)

    # The older spelling of the same (kept for clients of vmkit 0.1).
    api.post("/v1/vms/{name}/migrate/cancel", status_code=204, include_in_schema=False)(
        cancel_migration)

    # --- the destination -----------------------------------------------------------------

    @api.post("/v1/migrations", response_model=IncomingReady, status_code=201)
    async def accept_migration(body: IncomingMigration, request: Request) -> dict[str, Any]:
        """(Between vmkit hosts) get ready to receive a VM: its disk over NBD, then its state."""
        if not request.scope.get("server"):
            raise InvalidInputError("migrations arrive over TCP ('vmkitd --listen')")
        address = request.scope["server"][0]  # where the source reached us: NBD listens there
        return await server.migrations.accept(body.spec, body.mac, body.disk_bytes,
                                              body.disk_used, body.qemu, address, body.postcopy)

    @api.post("/v1/migrations/{name}/digest", response_model=MemoryDigest)
    async def migration_digest(name: VmName) -> dict[str, str]:
        """(Between vmkit hosts) the arrived guest's memory digest, before it runs here."""
        return {"digest": await server.migrations.digest(name)}

    @api.post("/v1/migrations/{name}/finish", response_model=Vm)
    async def finish_migration(name: VmName, body: FinishMigration | None = None
                               ) -> dict[str, Any]:
        """(Between vmkit hosts) run the arrived guest here, and watch it for ``watch``
        seconds; it is removed here if it fails meanwhile."""
        watch = (body or FinishMigration.model_validate({})).watch
        return await server.migrations.finish(name, watch)

    @api.delete("/v1/migrations/{name}", status_code=204)
    async def abort_migration(name: VmName) -> None:
        await server.migrations.abort(name)

    return api


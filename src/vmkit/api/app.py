"""The REST API: HTTP in, Host calls, JSON out. It parses and renders; it never runs QEMU.

Errors leave as ``{"error": kind, "message": sentence}`` with the status of their class.
On the TCP listener every request needs ``Authorization: Bearer <token>``, except the
dashboard's static files under ``/ui/`` (they hold no data; each data call they make sends
the token). Browsers cannot set headers on a WebSocket, so websockets also take the token as
the subprotocol ``bearer.<token>`` offered next to ``vmkit`` (which the server accepts).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .. import __version__
from ..errors import (InvalidInputError, NotFoundError, TooLargeError, UnauthorizedError,
                      VmkitError, to_body)
from ..core.host import host_memory_mib
from ..server import Server
from ..images.debian import debian_options
from ..paths import open_nofollow
from ..spec import check_spec, make_spec, validate_name
from .guards import Guards
from .models import (MAX_STDIN_BYTES, NAME_SCHEMA, Error, ExecRequest, ExportRequest,
                     FastTemplate, FileChange, FinishMigration, ForkCreate, HostInfo, Image,
                     ImageImport, IncomingMigration, IncomingReady, MemoryDigest, MigrateRequest,
                     Network, NetworkCreate, Operation, RemoteHost, Snapshot, SnapshotCreate,
                     Template, TemplateCreate, Vm, VmCreate, VmResize, VmStats, VncDisplay)

log = logging.getLogger("vmkit.api")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (401, 404, 409, 413, 422, 500, 502, 507)}
UI_DIR = FilePath(__file__).parent.parent / "ui" / "static"
KEEPALIVE = 15.0  # seconds between comments on an idle event stream, so proxies keep it open


# A name in a path: its pattern is in the schema, and validate_name's message answers a wrong
# one (FastAPI's own check would answer with pydantic's wording).
NamePath = Path(json_schema_extra=NAME_SCHEMA)


def vm_name(name: Annotated[str, NamePath]) -> str:
    return validate_name(name)


def image_name(name: Annotated[str, NamePath]) -> str:
    return validate_name(name, "image")


def snapshot_name(snap: Annotated[str, NamePath]) -> str:
    return validate_name(snap, "snapshot")


def template_name(name: Annotated[str, NamePath]) -> str:
    return validate_name(name, "template")


def network_name(name: Annotated[str, NamePath]) -> str:
    return validate_name(name, "network")


def operation_id(op_id: Annotated[str, NamePath]) -> str:
    return validate_name(op_id, "operation")


VmName = Annotated[str, Depends(vm_name)]
ImageName = Annotated[str, Depends(image_name)]
SnapshotName = Annotated[str, Depends(snapshot_name)]
TemplateName = Annotated[str, Depends(template_name)]
NetworkName = Annotated[str, Depends(network_name)]
OperationId = Annotated[str, Depends(operation_id)]


def create_app(server: Server, token: str | None = None, ui_url: str | None = None) -> FastAPI:
    """The API of ``server``; ``token``: required on every request (the TCP listener);
    ``ui_url``: where the dashboard is served (the TCP listener's /ui/), for /v1/info."""
    host = server.core
    app = FastAPI(title="vmkit", version=__version__, responses=ERRORS,
                  description="Run and manage QEMU virtual machines.")

    @app.exception_handler(VmkitError)
    async def vmkit_error(request: Request, exc: VmkitError) -> JSONResponse:
        return JSONResponse(to_body(exc), status_code=exc.status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error in %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal", "message": f"vmkitd failed: {exc!r}; "
                             "see vmkitd's log"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bytes that are not text
            return JSONResponse(to_body(InvalidInputError(
                "the body could not be read: send JSON in UTF-8 (content-type: "
                "application/json)")), status_code=422)
        kind = {404: "not_found", 405: "invalid_input"}.get(exc.status_code, "error")
        message = f"{request.method} {request.url.path}: {exc.detail}; see /docs for the API"
        headers = exc.headers
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers = {"allow": ", ".join(sorted(allowed_methods(app, request.scope)))}
        return JSONResponse({"error": kind, "message": message}, status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_input",
                             "message": validation_message(exc.errors()[0])}, status_code=422)

    app.add_middleware(Guards)  # added first, so it runs after the token check
    if token is not None:
        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Any:
            if _public(request.url.path):
                return await call_next(request)
            if not _token_ok(request.headers.get("authorization", ""), token):
                log.warning("refused %s %s from %s: bad or missing token", request.method,
                            request.url.path, request.client.host if request.client else "?")
                return JSONResponse(to_body(UnauthorizedError(
                    "a valid token is required: send 'Authorization: Bearer <token>'")), 401)
            return await call_next(request)

    # --- the dashboard -------------------------------------------------------------------

    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True, check_dir=False), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/v1/events", responses={200: {"content": {"text/event-stream": {}}}})
    async def events() -> StreamingResponse:
        """Server-sent events: first ``vms`` (the list of VMs), then ``vm`` ({"name", "vm"};
        vm is null once removed) each time a VM changes, and ``snapshots`` ({"vm"}) when a
        VM's snapshots change. Idle streams get a comment line every 15 s."""
        return StreamingResponse(_event_stream(host), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    # --- host and images ---------------------------------------------------------------

    @app.get("/v1/info", response_model=HostInfo)
    async def info() -> dict[str, Any]:
        return {**host.info(), "ui": ui_url}

    @app.get("/v1/images", response_model=list[Image])
    async def list_images() -> list[dict[str, Any]]:
        return host.list_images()

    @app.get("/v1/images/{name}", response_model=Image)
    async def get_image(name: ImageName) -> dict[str, Any]:
        return host.get_image(name)

    @app.post("/v1/images/{name}/build", response_model=Operation, status_code=202)
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
        return host.build_image(name, force, builder, options)

    @app.post("/v1/images/{name}/import", response_model=Operation, status_code=202)
    async def import_image(name: ImageName, body: ImageImport) -> dict[str, Any]:
        """Start importing a disk (qcow2, raw, vmdk, vdi) or ISO file on this host as an
        image; follow the returned operation for progress."""
        return host.import_image(name, body.path)

    @app.post("/v1/images/{name}/receive", response_model=Image, status_code=201,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/octet-stream": {"schema": {"type": "string",
                                                          "format": "binary"}}}}})
    async def receive_image(name: ImageName, request: Request,
                            digest: Annotated[str, Query(pattern="^[0-9a-f]{64}$")]
                            ) -> dict[str, Any]:
        """(Between vmkit hosts) store the image in the body, a sparse tar of its manifest
        (image.json) and files, as another host has it under ``digest``; a migration brings a
        VM's base image so."""
        return await host.receive_image(name, digest, request.stream())

    @app.delete("/v1/images/{name}", status_code=204)
    async def remove_image(name: ImageName) -> None:
        host.remove_image(name)

    @app.get("/v1/operations/{op_id}", response_model=Operation)
    async def get_operation(op_id: OperationId) -> dict[str, Any]:
        return host.operation(op_id)

    @app.delete("/v1/operations/{op_id}", response_model=Operation, status_code=202)
    async def cancel_operation(op_id: OperationId) -> dict[str, Any]:
        """Cancel a running image build or import; nothing of it is stored."""
        return host.cancel_operation(op_id)

    # --- VMs -----------------------------------------------------------------------------

    @app.get("/v1/vms", response_model=list[Vm])
    async def list_vms() -> list[dict[str, Any]]:
        return host.list_vms()

    @app.post("/v1/vms", response_model=Vm, status_code=201)
    async def create_vm(body: VmCreate) -> dict[str, Any]:
        """Create a VM and boot it; answers when the guest agent is ready."""
        if body.network is None:
            network: str | list[str] = "none" if body.disposable else "nat"
        else:  # an empty list asks for no NIC and gets none: never a default that widens
            network = body.network or "none"
        spec = make_spec(body.name, body.image, body.cpus, body.memory, body.disk, body.ports,
                         network, body.auto_remove, host_memory_mib(), body.disposable,
                         body.io_limit, body.display, body.cdrom, body.firmware, body.ssh_keys,
                         body.user_data, body.env)
        return await host.create_vm(spec)

    @app.get("/v1/vms/{name}", response_model=Vm)
    async def get_vm(name: VmName) -> dict[str, Any]:
        return host.get_vm(name)

    @app.delete("/v1/vms/{name}", status_code=204)
    async def remove_vm(name: VmName, force: bool = False) -> None:
        """Remove a stopped VM and its disk; force=true kills a running one first."""
        await host.remove_vm(name, force)

    @app.post("/v1/vms/{name}/start", response_model=Vm)
    async def start_vm(name: VmName) -> dict[str, Any]:
        return await host.start_vm(name)

    @app.post("/v1/vms/{name}/stop", response_model=Vm)
    async def stop_vm(name: VmName, timeout: Annotated[float, Query(gt=0, le=3600)] = 20.0
                      ) -> dict[str, Any]:
        """Shut down through the guest agent (or ACPI), then force it after ``timeout`` s."""
        return await host.stop_vm(name, timeout)

    @app.post("/v1/vms/{name}/resize", response_model=Vm)
    async def resize_vm(name: VmName, body: VmResize) -> dict[str, Any]:
        """New CPUs, memory and/or a bigger disk for a stopped VM."""
        return await host.resize_vm(name, body.cpus, body.memory, body.disk)

    @app.post("/v1/vms/{name}/kill", response_model=Vm)
    async def kill_vm(name: VmName) -> dict[str, Any]:
        return await host.kill_vm(name)

    @app.post("/v1/vms/{name}/restart", response_model=Vm)
    async def restart_vm(name: VmName, timeout: Annotated[float, Query(gt=0, le=3600)] = 20.0
                         ) -> dict[str, Any]:
        return await host.restart_vm(name, timeout)

    @app.post("/v1/vms/{name}/pause", response_model=Vm)
    async def pause_vm(name: VmName) -> dict[str, Any]:
        return await host.pause_vm(name)

    @app.post("/v1/vms/{name}/resume", response_model=Vm)
    async def resume_vm(name: VmName) -> dict[str, Any]:
        return await host.resume_vm(name)

    @app.post("/v1/vms/{name}/exec", responses={200: {"content": {"application/x-ndjson": {}}}})
    async def exec_vm(name: VmName, body: ExecRequest) -> StreamingResponse:
        """Run a command in the guest. Streams NDJSON lines: {"stdout": base64},
        {"stderr": base64}, and last {"exit_code": N}."""
        events = await host.exec_vm(name, body.argv, decode_stdin(body.stdin))

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for stream, data in events:
                    if stream == "exit":
                        yield json.dumps({"exit_code": data}).encode() + b"\n"
                    else:
                        assert isinstance(data, bytes)
                        yield json.dumps({stream: base64.b64encode(data).decode()}).encode() + b"\n"
            except VmkitError as e:
                yield json.dumps(to_body(e)).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get("/v1/vms/{name}/files", responses={200: {"content": {"application/octet-stream": {}}}})
    async def read_file(name: VmName, path: Annotated[str, Query(max_length=4096)]
                        ) -> StreamingResponse:
        """Download a file from the guest."""
        return StreamingResponse(await host.read_file(name, path),
                                 media_type="application/octet-stream")

    @app.put("/v1/vms/{name}/files")
    async def write_file(name: VmName, path: Annotated[str, Query(max_length=4096)],
                         request: Request) -> dict[str, int]:
        """Upload the request body to a file in the guest."""
        return {"bytes": await host.write_file(name, path, request.stream())}

    @app.get("/v1/vms/{name}/logs", responses={200: {"content": {"text/plain": {}}}})
    async def logs(name: VmName, follow: bool = False) -> StreamingResponse:
        """The VM's serial console output, kept on disk across restarts."""
        path = host.serial_log(name)

        async def chunks() -> AsyncIterator[bytes]:
            with contextlib.suppress(OSError), open_nofollow(path) as f:
                while True:
                    data = f.read(65536)
                    if data:
                        yield data
                    elif not follow or not host.is_live(name):
                        return  # a stopped VM writes nothing more: a follower is done
                    else:
                        await asyncio.sleep(0.2)

        return StreamingResponse(chunks(), media_type="text/plain")

    # --- snapshots, forks, templates ---------------------------------------------------------

    @app.get("/v1/vms/{name}/snapshots", response_model=list[Snapshot])
    async def list_snapshots(name: VmName) -> list[dict[str, Any]]:
        """The VM's snapshots, oldest first; ``parent`` links make the tree."""
        return host.snapshots.of_vm(name)

    @app.post("/v1/vms/{name}/snapshots", response_model=Snapshot, status_code=201)
    async def create_snapshot(name: VmName, body: SnapshotCreate) -> dict[str, Any]:
        """Snapshot the disk, and memory + devices of a running VM (paused only for the save)."""
        return await host.snapshots.create(name, body.name, body.memory)

    @app.get("/v1/vms/{name}/snapshots/{snap}", response_model=Snapshot)
    async def get_snapshot(name: VmName, snap: SnapshotName) -> dict[str, Any]:
        return host.snapshots.get(name, snap)

    @app.post("/v1/vms/{name}/snapshots/{snap}/restore", response_model=Vm)
    async def restore_snapshot(name: VmName, snap: SnapshotName) -> dict[str, Any]:
        """Bring the VM back to the snapshot: disk, and memory if it has one."""
        return await host.snapshots.restore(name, snap)

    @app.delete("/v1/vms/{name}/snapshots/{snap}", status_code=204)
    async def remove_snapshot(name: VmName, snap: SnapshotName) -> None:
        await host.snapshots.remove(name, snap)

    @app.post("/v1/forks", response_model=Vm, status_code=201)
    async def fork(body: ForkCreate) -> dict[str, Any]:
        """A new running VM from a memory snapshot; answers once it has its own identity."""
        return await host.snapshots.fork(body.source, body.name, body.ports, body.network,
                                         body.auto_remove)

    @app.get("/v1/templates", response_model=list[Template])
    async def list_templates() -> list[dict[str, Any]]:
        return host.snapshots.list_templates()

    @app.post("/v1/templates", response_model=Template, status_code=201)
    async def create_template(body: TemplateCreate) -> dict[str, Any]:
        return await host.snapshots.create_template(body.name, body.source)

    @app.post("/v1/templates/fast", response_model=Template)
    async def fast_template(body: FastTemplate) -> dict[str, Any]:
        """The template 'vmkit run --fast' forks, made on first use (boot once, snapshot)."""
        spec = make_spec("fast", body.image, body.cpus, body.memory, network=body.network,
                         host_memory_mib=host_memory_mib())
        name = await host.snapshots.fast_template(body.image, spec.cpus, spec.memory_mib,
                                                  spec.network != "none")
        return host.snapshots.get_template(name)

    @app.delete("/v1/templates/{name}", status_code=204)
    async def remove_template(name: TemplateName) -> None:
        host.snapshots.remove_template(name)

    # --- export and import ------------------------------------------------------------------

    def download(export: Any, media_type: str) -> StreamingResponse:
        return StreamingResponse(export.chunks, media_type=media_type, headers={
            "content-length": str(export.length),
            "content-disposition": f'attachment; filename="{export.filename}"'})

    @app.post("/v1/vms/{name}/export",
              responses={200: {"content": {"application/x-tar": {}}}})
    async def export_vm(name: VmName, body: ExportRequest) -> StreamingResponse:
        """The VM as one portable file (a tar archive), streamed; the VM keeps running."""
        export = await host.portable.export(name, body.format, body.memory, body.directory)
        return download(export, "application/x-tar")

    @app.post("/v1/imports", response_model=Vm, status_code=201, openapi_extra={
        "requestBody": {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}})
    async def import_vm(request: Request,
                        name: Annotated[str | None, Query(json_schema_extra=NAME_SCHEMA)] = None,
                        image: Annotated[str | None, Query(json_schema_extra=NAME_SCHEMA)
                                         ] = None,
                        port: Annotated[list[str] | None, Query(max_length=64)] = None,
                        filename: Annotated[str, Query(max_length=255)] = "") -> dict[str, Any]:
        """Make a VM of the request body: a vmkit export (it comes back as it was exported),
        an OVA, or a plain disk image whose whole device is an ext4 root filesystem (booted
        with IMAGE's kernel, tiny by default). ``port``: forwards instead of the exported ones."""
        for value, what in ((name, "VM"), (image, "image")):  # before a byte is received
            if value is not None:
                validate_name(value, what)
        upload = await host.portable.receive(request.stream())
        return await host.portable.import_file(upload, name, image, port, filename)

    # --- private networks --------------------------------------------------------------------

    @app.get("/v1/networks", response_model=list[Network])
    async def list_networks() -> list[dict[str, Any]]:
        return host.networks.all()

    @app.post("/v1/networks", response_model=Network, status_code=201)
    async def create_network(body: NetworkCreate) -> dict[str, Any]:
        """A private network: a bridge with DHCP and DNS for its VMs (needs vmkitd as root)."""
        return host.networks.create(body.name, body.subnet, body.isolated)

    @app.delete("/v1/networks/{name}", status_code=204)
    async def remove_network(name: NetworkName) -> None:
        """Remove a network no VM uses."""
        host.networks.remove(name)

    # --- forensics ---------------------------------------------------------------------------

    @app.post("/v1/vms/{name}/dump",
              responses={200: {"content": {"application/octet-stream": {}}}})
    async def dump_vm(name: VmName) -> StreamingResponse:
        """The guest's memory as an ELF core file (crash, gdb, volatility read it)."""
        return download(await host.forensics.dump(name), "application/octet-stream")

    @app.get("/v1/vms/{name}/stats", response_model=VmStats)
    async def vm_stats(name: VmName) -> dict[str, Any]:
        """CPU, memory, disk and network counters of the VM (those of a running one)."""
        return await host.stats.of(name)

    @app.get("/metrics", responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        """Every VM's counters in Prometheus' text format."""
        from ..services.stats import prometheus

        return Response(prometheus(await host.stats.all()),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/vms/{name}/diff", response_model=list[FileChange])
    async def diff_vm(name: VmName, before: Annotated[str | None, Query(
                          alias="from", json_schema_extra=NAME_SCHEMA, description="snapshot; "
                          "default: the image the VM was made from")] = None,
                      after: Annotated[str | None, Query(
                          alias="to", json_schema_extra=NAME_SCHEMA,
                          description="snapshot; default: now")] = None
                      ) -> list[dict[str, str]]:
        """Files added, removed and changed on the guest's disk, read from the host side."""
        for snap in (before, after):
            if snap is not None:
                validate_name(snap, "snapshot")
        return await host.forensics.diff(name, before, after)

    @app.post("/v1/vms/{name}/capture", status_code=201)
    async def start_capture(name: VmName) -> dict[str, Any]:
        """Start recording the VM's network traffic (both ways) into a pcap."""
        return await host.forensics.start_capture(name)

    @app.post("/v1/vms/{name}/capture/stop",
              responses={200: {"content": {"application/vnd.tcpdump.pcap": {}}}})
    async def stop_capture(name: VmName) -> StreamingResponse:
        """End the capture: the pcap (tcpdump format, read by tshark and wireshark)."""
        return download(await host.forensics.stop_capture(name), "application/vnd.tcpdump.pcap")

    # --- migration ---------------------------------------------------------------------------

    @app.post("/v1/vms/{name}/migrate", response_model=Operation, status_code=202)
    async def migrate(name: VmName, body: MigrateRequest) -> dict[str, Any]:
        """Move the running VM to another vmkit host, given by URL and token or by the name
        it is registered under here ('vmkit host add'); follow the returned operation."""
        from .. import hosts
        from ..services.migration import Peer

        if body.host is not None:
            known = hosts.get(host.paths, validate_name(body.host, "host"))
            peer = Peer(known.url, known.token, known.ca)
        elif body.url and body.token:
            peer = Peer(hosts.check_url(body.url), body.token, body.ca)
        else:
            raise InvalidInputError("give the destination's url and token, or the name of a "
                                    "registered host ('vmkit host ls')")
        return host.migrations.start(name, peer, body.postcopy, body.verify, body.watch,
                                     body.ports)

    @app.get("/v1/hosts", response_model=list[RemoteHost])
    async def list_hosts() -> list[dict[str, Any]]:
        """The other vmkit hosts registered here ('vmkit host add'), without their tokens:
        where the dashboard can migrate VMs to."""
        from .. import hosts

        return [{"name": p.name, "url": p.url} for p in hosts.load(host.paths).values()]

    @app.post("/v1/vms/{name}/migrate/cancel", status_code=204)
    async def cancel_migration(name: VmName) -> None:
        host.migrations.cancel(name)

    @app.post("/v1/migrations", response_model=IncomingReady, status_code=201)
    async def accept_migration(body: IncomingMigration, request: Request) -> dict[str, Any]:
        """(Between vmkit hosts) get ready to receive a VM: its disk over NBD, then its state."""
        if not request.scope.get("server"):
            raise InvalidInputError("migrations arrive over TCP ('vmkitd --listen')")
        spec = check_spec(body.spec, host_memory_mib())
        return await host.migrations.accept(spec, body.mac, body.disk_bytes, body.disk_used,
                                            body.qemu, request.scope["server"][0],
                                            body.postcopy)

    @app.post("/v1/migrations/{name}/digest", response_model=MemoryDigest)
    async def migration_digest(name: VmName) -> dict[str, str]:
        """(Between vmkit hosts) the arrived guest's memory digest, before it runs here."""
        return {"digest": await host.migrations.digest(name)}

    @app.post("/v1/migrations/{name}/finish", response_model=Vm)
    async def finish_migration(name: VmName, body: FinishMigration | None = None
                               ) -> dict[str, Any]:
        """(Between vmkit hosts) run the arrived guest here, and watch it for ``watch``
        seconds; it is removed here if it fails meanwhile."""
        return await host.migrations.finish(name, (body or FinishMigration()).watch)

    @app.delete("/v1/migrations/{name}", status_code=204)
    async def abort_migration(name: VmName) -> None:
        await host.migrations.abort(name)

    @app.get("/v1/vms/{name}/display", response_model=VncDisplay)
    async def display(name: VmName) -> dict[str, Any]:
        """The VNC server of a VM run with display vnc: its socket on this host and its
        password (made for each QEMU process); browsers use the websocket ``/vnc``."""

        return await server.display.vnc(name)

    @app.websocket("/v1/vms/{name}/vnc")
    async def vnc_proxy(ws: WebSocket, name: str) -> None:
        """The VM's VNC server (RFB) in binary frames both ways, for noVNC."""

        if not await _accept(ws, token):
            return
        try:
            validate_name(name)
            reader, writer = await server.display.open(name)
        except VmkitError as e:
            await ws.close(code=4000 + e.status, reason=e.message[:120])
            return

        async def to_client() -> None:
            while data := await reader.read(65536):
                await ws.send_bytes(data)
            await ws.close(code=1000, reason="the VNC server closed the connection")

        async def from_client(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await _relay(ws, to_client, from_client)
        finally:
            writer.close()

    @app.websocket("/v1/vms/{name}/console")
    async def console(ws: WebSocket, name: str) -> None:
        """The serial console: binary frames both ways."""
        if not await _accept(ws, token):
            return
        try:
            validate_name(name)
            hub = await host.console(name)
        except VmkitError as e:
            await ws.close(code=4000 + e.status, reason=e.message[:120])
            return
        queue = await hub.attach()

        async def to_client() -> None:
            while (data := await queue.get()) is not None:
                await ws.send_bytes(data)
            await ws.close(code=1000, reason="the VM stopped")

        try:
            await _relay(ws, to_client, hub.write)
        finally:
            hub.detach(queue)

    return app


async def _relay(ws: WebSocket, to_client: Callable[[], Coroutine[Any, Any, None]],
                 from_client: Callable[[bytes], Awaitable[None]]) -> None:
    """Run ``to_client`` and pass each frame the client sends to ``from_client``, until
    either side ends."""
    async def receive() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            await from_client(msg.get("bytes") or (msg.get("text") or "").encode())

    tasks = [asyncio.create_task(to_client()), asyncio.create_task(receive())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()


async def _accept(ws: WebSocket, token: str | None) -> bool:
    """Accept the websocket, then check the token: False, and closed with code 4401 (which
    the client can show, unlike a refused handshake), when it is wrong."""
    offered = list(ws.scope.get("subprotocols") or [])
    await ws.accept(subprotocol="vmkit" if "vmkit" in offered else None)
    if token is None or _token_ok(ws.headers.get("authorization", ""), token):
        return True
    sent = [p.removeprefix("bearer.") for p in offered if p.startswith("bearer.")]
    if any(_token_ok(f"Bearer {s}", token) for s in sent):
        return True
    await ws.close(code=4401, reason="a valid token is required")
    return False


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> set[str]:
    """The methods that some route takes on this request's path."""
    methods: set[str] = set()
    for route in app.routes:
        match, _ = route.matches({**scope, "type": "http"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods


def decode_stdin(text: str | None) -> bytes | None:
    """exec's stdin: base64 (as its output is), so that any bytes can be sent."""
    if not text:
        return None
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidInputError("stdin must be base64-encoded (text as UTF-8 first), e.g. "
                                '{"stdin": "aGVsbG8K"} for "hello\\n"') from None
    if len(data) > MAX_STDIN_BYTES:
        raise TooLargeError(f"stdin is larger than {MAX_STDIN_BYTES >> 20} MiB: copy the data "
                            "in with cp (PUT /v1/vms/NAME/files) and read it from there")
    return data


def validation_message(error: dict[str, Any]) -> str:
    """One sentence for the first thing pydantic found wrong in a request."""
    where = ".".join(str(p) for p in error["loc"] if p not in ("body", "path", "query"))
    if error["type"] == "vmkit":  # one of vmkit's own checks: its message says it all
        return str(error["msg"])
    if error["type"] == "extra_forbidden":
        return f"unknown field {where!r}: see /docs for the fields this request takes"
    if error["type"] == "missing":
        return f"{where} is required"
    if error["type"] == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'syntax')})"
    return f"{where}: {error['msg']}"


def _public(path: str) -> bool:
    """The dashboard's static files and the redirect to them: no data, no token."""
    return path in ("/", "/ui") or path.startswith("/ui/")


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _event_stream(host: Host) -> AsyncIterator[bytes]:
    """The body of /v1/events; ends when the daemon stops (Changes.close)."""
    with host.changes.subscribe() as queue:
        yield _sse("vms", host.list_vms())  # after subscribing, so no change falls between
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            changes = [first]
            while not queue.empty():  # a burst of changes: each VM once, as it is now
                changes.append(queue.get_nowait())
            for kind, name in dict.fromkeys(changes):
                if kind == "closed":
                    return
                if kind == "overflow":
                    yield _sse("vms", host.list_vms())
                elif kind == "vm":
                    yield _sse("vm", {"name": name, "vm": _vm_or_none(host, name)})
                else:
                    yield _sse(kind, {"vm": name})


def _vm_or_none(host: Host, name: str) -> dict[str, Any] | None:
    try:
        return host.get_vm(name)
    except NotFoundError:
        return None


def _token_ok(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

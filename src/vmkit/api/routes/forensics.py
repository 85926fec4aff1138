"""Looking into a VM from the host: memory dumps, disk diffs, traffic captures, on the
forensics service."""

from __future__ import annotations

import asyncio
import collections
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ...server import Server
from ...spec import validate_name
from ..models import NAME_SCHEMA, FileChange
from ..params import VmName
from ..responses import content, download


def router(server: Server) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/vms/{name}/dump", responses=content("application/octet-stream"))
    async def dump_vm(name: VmName) -> StreamingResponse:
        """The guest's memory as an ELF core file (crash, gdb, volatility read it)."""
        return download(await server.forensics.dump(name), "application/octet-stream")

    @api.get("/v1/vms/{name}/diff", response_model=list[FileChange])
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
        return await server.forensics.diff(name, before, after)

    @api.post("/v1/vms/{name}/capture", status_code=201)
    async def start_capture(name: VmName) -> dict[str, Any]:
        """Start recording the VM's network traffic (both ways) into a pcap."""
        return await server.forensics.start_capture(name)

    @api.post("/v1/vms/{name}/capture/stop", responses=content("application/vnd.tcpdump.pcap"))
    async def stop_capture(name: VmName) -> StreamingResponse:
        """End the capture: the pcap (tcpdump format, read by tshark and wireshark)."""
        return download(await server.forensics.stop_capture(name),
                        "application/vnd.tcpdump.pcap")

    @api.delete("/v1/vms/{name}/capture", status_code=204)
    async def cancel_capture(name: VmName) -> None:
        """End the capture and throw away what it recorded."""
        pcap = await server.forensics.stop_capture(name)
        await asyncio.to_thread(collections.deque, pcap.chunks, 0)  # read to its end: removed

    return api

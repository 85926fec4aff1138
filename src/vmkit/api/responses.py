"""Response bodies that are not JSON, shared by the routers."""

from __future__ import annotations

from typing import Any

from fastapi.responses import StreamingResponse

from ..core.transfers import Download


def download(export: Download, media_type: str) -> StreamingResponse:
    """A file the client saves: its length and name in the headers."""
    return StreamingResponse(export.chunks, media_type=media_type, headers={
        "content-length": str(export.length),
        "content-disposition": f'attachment; filename="{export.filename}"'})


def content(media_type: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route whose 200 answer is a body of ``media_type``."""
    return {200: {"content": {media_type: {}}}}


def binary_body() -> dict[str, Any]:
    """``openapi_extra=`` of a route that streams its request body of raw bytes."""
    return {"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

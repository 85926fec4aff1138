"""Names in paths: each route's path parameters, checked by spec.validate_name.

The pattern is in the schema, and validate_name's message answers a wrong name (FastAPI's own
check would answer with pydantic's wording).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from ..spec import validate_name
from .models import NAME_SCHEMA

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

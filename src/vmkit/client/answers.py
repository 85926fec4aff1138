"""Reading vmkitd's answers: as the typed models of ``vmkit.models``, or as plain records.

The models need pydantic, whose import and schemas cost a command ~60 ms. A client made with
``plain=True`` (the CLI's) reads the same JSON into :class:`Record` dicts instead, so the
answer types are named here rather than imported: a plain client never loads them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ..errors import DaemonError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from ..models import (Capture, ExportedFile, FileChange, HostInfo, Image, Network, Operation,
                          SavedFile, Snapshot, Template, Vm, VmStats, VncDisplay)

T = TypeVar("T")


class Record(dict[str, Any]):
    """A JSON object as a plain client returns it: a dict whose keys are also attributes, so
    that it reads like the model it stands for (``vm.state``, ``vm["state"]``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class Answer(Generic[T]):
    """One type of vmkitd's answers: the model called ``model`` in ``vmkit.models``, a list of
    them if ``many``, or any JSON if ``model`` is None."""

    def __init__(self, model: str | None, many: bool = False) -> None:
        self.model, self.many = model, many
        self._adapter: TypeAdapter[Any] | None = None  # built once: it costs a schema

    def read(self, body: bytes, what: str, plain: bool) -> T:
        """vmkitd's JSON answer ``body`` to ``what`` (e.g. "GET /vms/web"): the one place the
        SDK reads what vmkitd sends."""
        try:
            if plain or self.model is None:
                return cast(T, json.loads(body, object_hook=Record))
            return cast(T, self._adapted().validate_json(body))
        except ValueError as e:  # not JSON, or not this model (ValidationError is one)
            raise DaemonError(f"vmkitd's answer to {what} is not what this SDK reads "
                              f"({_problem(e)}); are vmkit and vmkitd the same version?"
                              ) from None

    def make(self, plain: bool, **fields: Any) -> T:
        """A result the SDK puts together itself (e.g. a file it saved), of this type."""
        return cast(T, Record(fields) if plain else self._adapted().validate_python(fields))

    def _adapted(self) -> TypeAdapter[Any]:
        if self._adapter is None:
            from pydantic import TypeAdapter

            from .. import models

            model: Any = getattr(models, self.model or "")
            self._adapter = TypeAdapter(list[model] if self.many else model)
        return self._adapter


def _problem(error: ValueError) -> str:
    errors = getattr(error, "errors", None)  # a pydantic ValidationError: where and what
    if errors is None:
        return str(error)
    problem = errors()[0]
    return f"{'.'.join(str(p) for p in problem['loc']) or 'the answer'}: {problem['msg']}"


CAPTURE: Answer[Capture] = Answer("Capture")
EXPORTED_FILE: Answer[ExportedFile] = Answer("ExportedFile")
FILE_CHANGES: Answer[list[FileChange]] = Answer("FileChange", many=True)
HOST_INFO: Answer[HostInfo] = Answer("HostInfo")
IMAGE: Answer[Image] = Answer("Image")
IMAGES: Answer[list[Image]] = Answer("Image", many=True)
NETWORK: Answer[Network] = Answer("Network")
NETWORKS: Answer[list[Network]] = Answer("Network", many=True)
OPERATION: Answer[Operation] = Answer("Operation")
SAVED_FILE: Answer[SavedFile] = Answer("SavedFile")
SNAPSHOT: Answer[Snapshot] = Answer("Snapshot")
SNAPSHOTS: Answer[list[Snapshot]] = Answer("Snapshot", many=True)
TEMPLATE: Answer[Template] = Answer("Template")
TEMPLATES: Answer[list[Template]] = Answer("Template", many=True)
VM: Answer[Vm] = Answer("Vm")
VMS: Answer[list[Vm]] = Answer("Vm", many=True)
VM_STATS: Answer[VmStats] = Answer("VmStats")
VNC_DISPLAY: Answer[VncDisplay] = Answer("VncDisplay")
JSON: Answer[Any] = Answer(None)

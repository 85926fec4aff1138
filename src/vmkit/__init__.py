"""vmkit: a virtual-machine manager on QEMU.

The public surface is ``Client`` (the Python SDK), ``ExecResult``, the models its calls
return (``Vm``, ``Image``, ``Snapshot``, ``Operation``... from ``vmkit.models``) and the error
classes. ``Client`` and the models are imported on first use, so that tools which only need
the errors (the daemon, the CLI's fast paths) do not pay for importing the HTTP stack and
pydantic.
"""

from typing import TYPE_CHECKING, Any

from .errors import (AgentError, ConflictError, DaemonError, HostError, ImageError,
                     InvalidInputError, InvalidStateError, LaunchError, MigrationError,
                     NoSpaceError, NotFoundError, QmpError, TooLargeError, UnauthorizedError,
                     VmkitError)

if TYPE_CHECKING:
    from .client import Client, ExecResult
    from .models import (Capture, CloudInit, ExportedFile, FileChange, HostInfo, Image, Network,
                         Operation, PortForward, SavedFile, Snapshot, Template, Vm, VmStats,
                         VncDisplay)

__version__ = "0.1.0"
_CLIENT = ("Client", "ExecResult")
_MODELS = ("Vm", "PortForward", "CloudInit", "Image", "Operation", "Snapshot", "Template",
           "Network", "VmStats", "FileChange", "VncDisplay", "HostInfo", "Capture", "SavedFile",
           "ExportedFile")
__all__ = [
    "Client", "ExecResult", "VmkitError", "InvalidInputError", "NotFoundError", "ConflictError",
    "InvalidStateError", "HostError", "ImageError", "LaunchError", "QmpError", "AgentError",
    "DaemonError", "UnauthorizedError", "NoSpaceError", "TooLargeError", "MigrationError",
    "Vm", "PortForward", "CloudInit", "Image", "Operation", "Snapshot", "Template", "Network",
    "VmStats", "FileChange", "VncDisplay", "HostInfo", "Capture", "SavedFile", "ExportedFile",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        from . import client

        return getattr(client, name)
    if name in _MODELS:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'vmkit' has no attribute {name!r}")

"""vmkit: a virtual-machine manager on QEMU."""

__version__ = "0.1.0"

from .client import Client, ExecResult
from .errors import (AgentError, ConflictError, DaemonError, HostError, ImageError,
                     InvalidInputError, InvalidStateError, LaunchError, NotFoundError, QmpError,
                     UnauthorizedError, VmkitError)

__all__ = [
    "Client", "ExecResult", "VmkitError", "InvalidInputError", "NotFoundError", "ConflictError",
    "InvalidStateError", "HostError", "ImageError", "LaunchError", "QmpError", "AgentError",
    "DaemonError", "UnauthorizedError", "__version__",
]

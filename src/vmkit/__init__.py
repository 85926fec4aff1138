"""vmkit: a virtual-machine manager on QEMU.

The public surface is ``Client`` (the Python SDK), ``ExecResult`` and the error classes.
``Client`` is imported on first use, so that tools which only need the errors (the daemon,
the CLI's fast paths) do not pay for importing the HTTP stack.
"""

from typing import TYPE_CHECKING, Any

from .errors import (AgentError, ConflictError, DaemonError, HostError, ImageError,
                     InvalidInputError, InvalidStateError, LaunchError, MigrationError,
                     NoSpaceError, NotFoundError, QmpError, TooLargeError, UnauthorizedError,
                     VmkitError)

if TYPE_CHECKING:
    from .client import Client, ExecResult

__version__ = "0.1.0"
__all__ = [
    "Client", "ExecResult", "VmkitError", "InvalidInputError", "NotFoundError", "ConflictError",
    "InvalidStateError", "HostError", "ImageError", "LaunchError", "QmpError", "AgentError",
    "DaemonError", "UnauthorizedError", "NoSpaceError", "TooLargeError", "MigrationError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in ("Client", "ExecResult"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'vmkit' has no attribute {name!r}")

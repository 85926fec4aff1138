"""Every error vmkit raises, rooted at VmkitError.

    VmkitError                    message is a sentence the user can act on
    ├── InvalidInputError         a bad name, size, port, ... (HTTP 422)
    │   └── TooLargeError         a request body, argv or stdin over its cap (HTTP 413)
    ├── UnauthorizedError         no valid token on a TCP connection (HTTP 401)
    ├── NotFoundError             no such VM, image, operation (HTTP 404)
    ├── ConflictError             name taken, port in use, image in use (HTTP 409)
    ├── InvalidStateError         the VM is not in a state that allows this (HTTP 409)
    ├── HostError                 the host lacks something: QEMU, a writable VMKIT_HOME (HTTP 500)
    │   └── NoSpaceError          VMKIT_HOME is full (HTTP 507)
    ├── ImageError                an image cannot be built or is corrupt (HTTP 409)
    ├── LaunchError               QEMU would not start; carries the log tail (HTTP 500)
    ├── QmpError                  QEMU's monitor failed or refused a command (HTTP 500)
    ├── MigrationError            a move failed, or its guest failed there (HTTP 502)
    ├── AgentError                the guest agent failed or timed out (HTTP 502)
    ├── ClusterError              etcd cannot be reached or has lost quorum (HTTP 503)
    └── DaemonError               the CLI/SDK cannot reach vmkitd (client side only)

The API turns each class into an HTTP status and a ``{"error": kind, "message": ...}`` body
with ``http_status``; the client turns that body back into the same class.
"""

from __future__ import annotations


class VmkitError(Exception):
    status = 500
    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(VmkitError):
    status, kind = 422, "invalid_input"


class TooLargeError(InvalidInputError):
    status, kind = 413, "too_large"


class UnauthorizedError(VmkitError):
    status, kind = 401, "unauthorized"


class NotFoundError(VmkitError):
    status, kind = 404, "not_found"


class ConflictError(VmkitError):
    status, kind = 409, "conflict"


class InvalidStateError(ConflictError):
    kind = "invalid_state"


class HostError(VmkitError):
    status, kind = 500, "host"


class NoSpaceError(HostError):
    status, kind = 507, "no_space"


class ImageError(VmkitError):
    status, kind = 409, "image"


class LaunchError(VmkitError):
    status, kind = 500, "launch"


class QmpError(VmkitError):
    status, kind = 500, "qmp"


class MigrationError(VmkitError):
    status, kind = 502, "migration"


class AgentError(VmkitError):
    status, kind = 502, "agent"


class ClusterError(VmkitError):
    status, kind = 503, "cluster"


class DaemonError(VmkitError):
    status, kind = 503, "daemon"


_BY_KIND = {
    cls.kind: cls
    for cls in (
        InvalidInputError, TooLargeError, UnauthorizedError, NotFoundError, ConflictError,
        InvalidStateError, HostError,
        NoSpaceError, ImageError, LaunchError, QmpError, MigrationError, AgentError, DaemonError,
        ClusterError,
    )
}


def error_from_body(body: dict[str, str]) -> VmkitError:
    """Rebuild the error a daemon reported (the inverse of ``to_body``)."""
    cls = _BY_KIND.get(body.get("error", ""), VmkitError)
    return cls(body.get("message", "unknown error"))


def to_body(err: VmkitError) -> dict[str, str]:
    return {"error": err.kind, "message": err.message}

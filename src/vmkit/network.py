"""User-mode NAT networking: the host side of port forwards."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from .errors import ConflictError
from .spec import PortForward


def check_ports_free(forwards: Iterable[PortForward]) -> None:
    """Raise ConflictError naming the first host port that QEMU could not bind."""
    for f in forwards:
        family = socket.AF_INET6 if ":" in f.host_addr else socket.AF_INET
        kind = socket.SOCK_STREAM if f.proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as slirp binds
            try:
                s.bind((f.host_addr, f.host_port))
            except OSError as e:
                raise ConflictError(
                    f"host port {f.host_addr}:{f.host_port}/{f.proto} is not available "
                    f"({e.strerror}); choose another host port, e.g. -p {f.host_port + 1}:{f.guest_port}"
                ) from None


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, chosen by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])

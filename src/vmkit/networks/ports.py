"""User-mode NAT networking: the host side of port forwards."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable

from ..errors import ConflictError, LaunchError, VmkitError
from ..spec import PortForward

# QEMU's words when another process bound a forwarded port between our check and its start.
_HOSTFWD_FAILED = re.compile(r"Could not set up host forwarding rule '(tcp|udp):\[?(.*?)\]?:"
                             r"(\d+)-.*?:(\d+)'")


def check_ports_free(forwards: Iterable[PortForward],
                     remedy: str = "choose another host port") -> None:
    """Raise ConflictError naming the first host port that QEMU could not bind, and
    ``remedy``, with an example."""
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
                    f"({e.strerror}); {remedy}, e.g. -p {f.host_port + 1}:{f.guest_port}"
                ) from None


def explain_launch_error(error: LaunchError) -> VmkitError:
    """A QEMU that could not bind a forwarded port (two VMs asking for it at once) as
    vmkit's own conflict; any other launch error as it is."""
    m = _HOSTFWD_FAILED.search(error.message)
    if m is None:
        return error
    proto, addr, host_port, guest_port = m.groups()
    return ConflictError(f"host port {addr or '0.0.0.0'}:{host_port}/{proto} was taken by "
                         f"another VM or program as this VM started; choose another host "
                         f"port, e.g. -p {int(host_port) + 1}:{guest_port}")


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now at ``addr`` (IPv4 or IPv6), chosen by the kernel."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])

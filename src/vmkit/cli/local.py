"""Read-only GETs from the local vmkitd with nothing but a socket, for the CLI's hot path.

``vmkit ls`` should answer in well under 150 ms; importing httpx costs about that much here,
and even ``http.client`` costs 30 ms (it pulls in the email parser). So the listing sends one
HTTP/1.0 GET down the daemon's Unix socket by hand. Anything more (autostart, errors,
streaming, TCP with tokens) goes through ``vmkit.Client``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


def get_json(sock_path: Path, path: str) -> Any | None:
    """The JSON answer of a successful GET, or None when the daemon is not there or says no
    (the caller then asks again through the full client, which explains or starts it)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(sock_path))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: vmkitd\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(65536):  # HTTP/1.0: the server closes after the answer
                chunks.append(chunk)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if head.split(b" ", 2)[1:2] != [b"200"]:
        return None
    return json.loads(body)

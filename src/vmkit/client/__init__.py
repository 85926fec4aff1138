"""The Python SDK: ``vmkit.Client`` speaks to vmkitd's REST API, locally over its Unix socket
or remotely over TCP with a token, and returns typed models (``vmkit.models``). The CLI is
built on it, so the SDK can do all the CLI can.

    with vmkit.Client() as c:
        c.create_vm("web", ports=["8080:80"])
        print(c.exec("web", ["uname", "-a"]).stdout.decode())

``connection`` holds the plumbing (HTTP, errors, starting vmkitd, reading answers into
models), ``client`` the calls. Like the CLI, the SDK imports nothing of the server side.
"""

from __future__ import annotations

from .client import Client, ExecResult
from .connection import LONG, PROVISION

__all__ = ["Client", "ExecResult", "LONG", "PROVISION"]

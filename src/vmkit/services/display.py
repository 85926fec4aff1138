"""The VNC display of VMs run with ``--display vnc``.

QEMU serves VNC on a Unix socket in the VM's directory (argv.py), with password
authentication on. The password is made and set over QMP on first use by each QEMU process
(so a restored, restarted or migrated VM gets its own) and kept with that QEMU's pid; until
then QEMU refuses every VNC client. The dashboard reaches the socket through vmkitd's
websocket proxy, ``/v1/vms/NAME/vnc``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ..errors import InvalidStateError
from ..paths import atomic_write

if TYPE_CHECKING:
    from ..core.core import Core

PASSWORD_CHARS = string.ascii_letters + string.digits
PASSWORD_LENGTH = 8  # VNC's DES authentication uses the first 8 characters only


class Display:
    """The VNC servers of the VMs of ``host``."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def vnc(self, name: str) -> dict[str, Any]:
        """Where the running VM's VNC server is, and its password (set now if it has none)."""
        return await _vnc(self.core, self._locks[name], name)

    async def open(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the VM's VNC server (its password set)."""
        where = await self.vnc(name)
        try:
            return await asyncio.open_unix_connection(where["socket"])
        except OSError as e:
            raise InvalidStateError(f"VM {name}'s VNC server does not answer ({e.strerror}); "
                                    f"restart it with 'vmkit restart {name}'") from e


async def _vnc(core: Core, lock: asyncio.Lock, name: str) -> dict[str, Any]:
    machine = core.live_machine(name, "console")
    if core.record(name).spec.display != "vnc":
        raise InvalidStateError(f"VM {name} has no display: create it with --display vnc")
    vmp = machine.paths
    async with lock:
        try:
            saved = json.loads(vmp.vnc_password.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("pid") != machine.pid:
            password = "".join(secrets.choice(PASSWORD_CHARS) for _ in range(PASSWORD_LENGTH))
            await machine.execute("set_password", {"protocol": "vnc", "password": password})
            saved = {"pid": machine.pid, "password": password}
            atomic_write(vmp.vnc_password, json.dumps(saved).encode(), 0o600)
    return {"name": name, "socket": str(vmp.vnc), "password": saved["password"],
            "websocket": f"/v1/vms/{name}/vnc"}

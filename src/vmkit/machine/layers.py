"""A new top layer under a running VM's disk, handed to QEMU by descriptor.

This does what ``blockdev-snapshot-sync`` does, except that vmkitd makes the file, not QEMU: a
jailed QEMU cannot open a path in VMKIT_HOME/disks (jail.py), and should not create files
there anyway. The layer's node is named ``layer-<id>`` so that the top layer can be read back
from QEMU after a daemon crash (``top``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import disks
from ..errors import VmkitError

if TYPE_CHECKING:
    from .jail import Jail
    from .process import Machine

DEVICE = "disk0"
PREFIX = "layer-"


async def push(machine: Machine, path: Path, below: Path, jail: Jail | None) -> None:
    """Make a new empty layer at ``path`` the top of the VM's disk; ``below`` (its top until
    now) is frozen from then on. If anything fails, the VM keeps writing to ``below``."""
    size = (await _disk(machine))["inserted"]["image"]["virtual-size"]
    await disks.create_overlay(path, below, "qcow2", size, in_use=True)
    node, fdset = f"{PREFIX}{path.stem}", None
    try:
        if jail is not None:
            jail.give(path)
        # Both access modes: QEMU reopens the layer read-only once a newer one is above it.
        for flags in (os.O_RDWR, os.O_RDONLY):
            fdset = await _add_fd(machine, path, flags, fdset)
        # No image locking: QEMU takes its locks on open file descriptions, and the ones in
        # the fdset outlive QEMU's own copies, so a lock would outlast its release (a "cont"
        # after a save then fails for a lock held by QEMU itself). No one else opens it.
        await machine.execute("blockdev-add", {
            "driver": "qcow2", "node-name": node, "backing": None,
            "file": {"driver": "file", "filename": f"/dev/fdset/{fdset}", "locking": "off"}})
        try:
            await machine.execute("blockdev-snapshot", {"node": DEVICE, "overlay": node})
        except VmkitError:
            with contextlib.suppress(VmkitError):
                await machine.execute("blockdev-del", {"node-name": node})
            raise
    except BaseException:
        if fdset is not None:
            with contextlib.suppress(VmkitError):
                await machine.execute("remove-fd", {"fdset-id": fdset})
        path.unlink(missing_ok=True)
        raise


async def top(machine: Machine) -> str | None:
    """The id of the layer a VM writes to, if it is one ``push`` put there."""
    node = str((await _disk(machine))["inserted"]["node-name"])
    return node[len(PREFIX):] if node.startswith(PREFIX) else None


async def _disk(machine: Machine) -> dict[str, Any]:
    return next(d for d in await machine.execute("query-block") if d["device"] == DEVICE)


async def _add_fd(machine: Machine, path: Path, flags: int, fdset: int | None) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        machine.qmp.send_fd_scm(fd)
        reply = await machine.execute("add-fd", {} if fdset is None else {"fdset-id": fdset})
        return int(reply["fdset-id"])
    finally:
        os.close(fd)

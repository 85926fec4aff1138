"""Save and load a VM's state (RAM, CPUs, devices) with QEMU's migration stream, to a file.

The file is handed to QEMU as a descriptor over the QMP socket (``getfd`` + ``fd:`` URI): QEMU
runs sandboxed and may not spawn the ``exec:cat`` helper, and 7.2 has no ``file:`` URI.
With ``ignore_shared`` QEMU leaves out RAM that lives in a shared file (the file is the RAM):
that is how a fork loads only device state on top of a snapshot's RAM file.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from ..errors import QmpError
from .process import Machine

UNLIMITED = 1 << 40  # bytes/s: QEMU's default cap (128 MiB/s) would make a save 5x slower
FD_NAME = "vmkit-state"


async def save(machine: Machine, path: Path, *, ignore_shared: bool = False,
               bandwidth: int | None = None) -> None:
    """Write the (paused) VM's state to the new file ``path`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        await _configure(machine, ignore_shared)
        await machine.execute("migrate-set-parameters", {"max-bandwidth": bandwidth or UNLIMITED})
        await _pass_fd(machine, fd)
        await machine.execute("migrate", {"uri": f"fd:{FD_NAME}"})
        info = await _finished(machine)
        if info["status"] != "completed":
            raise QmpError(f"QEMU could not save the VM's state: "
                           f"{info.get('error-desc', info['status'])}")
        await asyncio.to_thread(os.fsync, fd)
    finally:
        os.close(fd)


async def load(machine: Machine, path: Path, *, ignore_shared: bool = False) -> None:
    """Load a saved state into a QEMU started with ``-incoming defer``; it stays paused."""
    fd = os.open(path, os.O_RDONLY)
    try:
        await _configure(machine, ignore_shared)
        await _pass_fd(machine, fd)
        await machine.execute("migrate-incoming", {"uri": f"fd:{FD_NAME}"})
        # QEMU exits if the state does not load; the caller sees the machine exit.
        while await machine.status() == "inmigrate":
            await asyncio.sleep(0.001)
    finally:
        os.close(fd)


async def _configure(machine: Machine, ignore_shared: bool) -> None:
    await machine.execute("migrate-set-capabilities", {"capabilities": [
        {"capability": "x-ignore-shared", "state": ignore_shared}]})


async def _pass_fd(machine: Machine, fd: int) -> None:
    machine.qmp.send_fd_scm(fd)
    await machine.execute("getfd", {"fdname": FD_NAME})


async def _finished(machine: Machine) -> dict[str, Any]:
    while True:
        info = await machine.execute("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            return dict(info)
        await asyncio.sleep(0.002)


async def cancel(machine: Machine) -> None:
    """Stop a save in progress (a daemon that died mid-save left it running)."""
    await machine.execute("migrate_cancel")

"""Removing a VM from this host at once: its QEMU, its record, its files."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal

from ..machine.process import find_qemu, pid_matches
from ..store import VmRecord
from .layers import DiskLayers
from .registry import Registry


async def discard(reg: Registry, layers: DiskLayers, name: str) -> None:
    """Remove VM ``name`` now, its QEMU killed, its files and unused layers deleted."""
    if (machine := reg.machines.pop(name, None)) is not None:
        reg.stopping.add(name)
        await machine.kill()
    rec = reg.store.vm(name)
    if rec and (pid := qemu_pid(reg, rec)):
        os.kill(pid, signal.SIGKILL)  # a QEMU we lost track of must not outlive its VM
    reg.store.remove_vm(name)
    await asyncio.to_thread(shutil.rmtree, reg.paths.vm(name).dir, True)
    await layers.collect_garbage()


def qemu_pid(reg: Registry, rec: VmRecord) -> int | None:
    """The pid of this VM's QEMU if it runs: as recorded, or found among all processes
    (a daemon killed between starting QEMU and recording its pid)."""
    vmp = reg.paths.vm(rec.name)
    return rec.pid if rec.pid and pid_matches(rec.pid, vmp) else find_qemu(vmp)

"""QEMU's side of backing up a running VM: a point-in-time copy of its disk, made by
``blockdev-backup`` into a local raw image while the guest runs on.

A persistent dirty bitmap on the disk's top layer (stored in the qcow2, so it outlives QEMU)
marks what the guest wrote since the last backup. A backup starts, in one transaction, a new
bitmap for the writes to come, freezes the old one and starts the job, which copies only the
clusters the old one marks (or everything, for a full backup). The old bitmap goes only once
borg has committed the archive (``commit``); on any failure the new one is merged back into
it (``rollback``), so nothing written meanwhile is forgotten.

The image is made by vmkitd and handed to QEMU by descriptor, as disk layers are
(machine/layers.py): a jailed QEMU cannot open paths in VMKIT_HOME.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import HostError, VmkitError
from ...machine.jail import Jail
from ...machine.layers import DEVICE
from ...machine.process import Machine

PREFIX = "vmkit-backup-"  # our bitmaps' names; the id of the backup follows
JOB = "vmkit-backup"
TARGET = "vmkit-backup-target"
SPEED_ENV = "VMKIT_BACKUP_SPEED"  # bytes/s the job may read (0 or unset: no limit)


@dataclass(frozen=True)
class Bitmaps:
    """The bitmap that starts with this backup, and the one it reads (None: a full backup)."""
    new: str
    old: str | None


async def disk(machine: Machine) -> dict[str, Any]:
    """QEMU's view of the VM's disk (query-block's ``inserted``)."""
    for d in await machine.execute("query-block"):
        if d["device"] == DEVICE:
            return dict(d["inserted"])
    raise HostError("the VM's QEMU has no disk to back up")


async def usable_bitmap(machine: Machine, name: str) -> bool:
    """Whether the bitmap ``name`` on the disk's top layer can be trusted: it exists, records
    writes, is stored in the qcow2 and was not left inconsistent by a QEMU that died."""
    for b in (await disk(machine)).get("dirty-bitmaps", []):
        if b.get("name") == name:
            return bool(b.get("recording") and b.get("persistent") and not b.get("inconsistent"))
    return False


async def clean_up(machine: Machine) -> None:
    """Remove what a backup cut short (vmkitd died during it) left in QEMU."""
    for job in await machine.execute("query-jobs"):
        if job.get("id") == JOB:
            with contextlib.suppress(VmkitError):
                await machine.execute("job-cancel", {"id": JOB})
            await _concluded(machine, None)
            with contextlib.suppress(VmkitError):
                await machine.execute("job-dismiss", {"id": JOB})
    with contextlib.suppress(VmkitError):
        await machine.execute("blockdev-del", {"node-name": TARGET})


async def start(machine: Machine, image: Path, bitmaps: Bitmaps, jail: Jail | None) -> int:
    """Attach ``image`` (a raw file of the disk's size: zeros, or the previous backup's image
    for an incremental one) and start the job; returns the fdset to remove once the image is
    detached again."""
    if jail is not None:
        jail.give(image)
    fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        machine.qmp.send_fd_scm(fd)
        fdset = int((await machine.execute("add-fd", {}))["fdset-id"])
    finally:
        os.close(fd)
    try:
        await machine.execute("blockdev-add", {
            "driver": "raw", "node-name": TARGET, "discard": "unmap",  # zeros may stay holes
            "file": {"driver": "file", "filename": f"/dev/fdset/{fdset}", "locking": "off"}})
        await machine.execute("transaction", {"actions": _actions(bitmaps)})
    except BaseException:
        await detach(machine, fdset)
        raise
    return fdset


def _actions(bitmaps: Bitmaps) -> list[dict[str, Any]]:
    """The transaction that starts a backup: the new bitmap begins exactly where the copy
    is taken, so no write falls between them."""
    backup: dict[str, Any] = {"job-id": JOB, "device": DEVICE, "target": TARGET,
                              "sync": "full", "auto-dismiss": False}
    if speed := int(os.environ.get(SPEED_ENV, "0") or 0):
        backup["speed"] = speed
    actions: list[dict[str, Any]] = [{"type": "block-dirty-bitmap-add", "data": {
        "node": DEVICE, "name": bitmaps.new, "persistent": True}}]
    if bitmaps.old is not None:
        backup.update(sync="bitmap", bitmap=bitmaps.old, **{"bitmap-mode": "never"})
        actions.append({"type": "block-dirty-bitmap-disable", "data": {
            "node": DEVICE, "name": bitmaps.old}})
    return [*actions, {"type": "blockdev-backup", "data": backup}]


async def wait(machine: Machine, progress: Callable[[int, int], None]) -> int:
    """Wait for the job to copy everything; the bytes it read (QEMU's job counter)."""
    try:
        job = await _concluded(machine, progress)
    except BaseException:  # cancelled: stop QEMU's copy too
        with contextlib.suppress(VmkitError):
            await machine.execute("job-cancel", {"id": JOB})
            await _concluded(machine, None)
        raise
    finally:
        with contextlib.suppress(VmkitError):
            await machine.execute("job-dismiss", {"id": JOB})
    if job.get("error"):
        raise HostError(f"QEMU could not copy the disk: {job['error']}")
    return int(job["current-progress"])


async def _concluded(machine: Machine, progress: Callable[[int, int], None] | None
                     ) -> dict[str, Any]:
    while True:
        job = next((j for j in await machine.execute("query-jobs") if j["id"] == JOB), None)
        if job is None:
            raise HostError("QEMU's backup job is gone")
        if progress is not None:
            progress(int(job["current-progress"]), int(job["total-progress"]))
        if job["status"] in ("concluded", "null"):
            return dict(job)
        await asyncio.sleep(0.05)


async def detach(machine: Machine, fdset: int) -> None:
    """Take the image out of QEMU again."""
    with contextlib.suppress(VmkitError):
        await machine.execute("blockdev-del", {"node-name": TARGET})
    with contextlib.suppress(VmkitError):
        await machine.execute("remove-fd", {"fdset-id": fdset})


async def commit(machine: Machine, bitmaps: Bitmaps) -> None:
    """borg has the backup: only writes since it started stay marked. Bitmaps of backups
    that never finished go too."""
    for b in (await disk(machine)).get("dirty-bitmaps", []):
        if b["name"].startswith(PREFIX) and b["name"] != bitmaps.new:
            await machine.execute("block-dirty-bitmap-remove", {"node": DEVICE, "name": b["name"]})


async def rollback(machine: Machine, bitmaps: Bitmaps) -> None:
    """The backup failed: the old bitmap marks again all that it did, plus what was written
    since; the new one goes."""
    with contextlib.suppress(VmkitError):
        if bitmaps.old is not None:
            await machine.execute("block-dirty-bitmap-merge", {
                "node": DEVICE, "target": bitmaps.old, "bitmaps": [bitmaps.new]})
            await machine.execute("block-dirty-bitmap-enable", {
                "node": DEVICE, "name": bitmaps.old})
        await machine.execute("block-dirty-bitmap-remove", {"node": DEVICE, "name": bitmaps.new})

"""Making one backup: a point-in-time image of the VM's disk (and memory) into a borg archive.

Three ways to the image, one way into borg. A running VM: QEMU's backup job (job.py) copies
the disk into a sparse raw image while the guest runs on, its filesystems frozen for the
moment the copy starts; for an incremental backup the image is the previous backup's (kept
locally, else read back out of borg) and the job writes over it only what the dirty bitmap
marks. With ``--memory``: the core freezes the disk and saves the memory as a snapshot does,
and the frozen layers are converted. A stopped VM: its disk chain is converted. borg then
stores the image as it is: each archive holds a whole image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.core import Core
from ...errors import AgentError, ConflictError, HostError, NotFoundError, VmkitError
from ...machine import disks, qemu
from ...machine.process import Machine
from ...state import LIVE
from . import borg, job

Progress = Callable[[float, str], None]
IMAGE = "disk0.raw"  # the disk image's name in each archive
_MiB = 1 << 20


@dataclass
class Image:
    """A backup's disk image: the raw file ``path`` of ``size`` bytes, the previous backup
    ``base`` with what changed since written over it (None: a full backup)."""
    path: Path
    size: int
    base: str | None = None
    read: int = 0  # bytes QEMU's job read from the VM's disk
    state: Path | None = None  # saved memory and devices
    bitmaps: job.Bitmaps | None = None
    machine: Machine | None = None
    layer: str = ""  # the VM's top layer the bitmap lives on


async def qemu_img(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec("qemu-img", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except BaseException:  # cancelled: qemu-img must not go on writing
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise HostError(f"qemu-img {args[0]} failed: {err.decode().strip()}")
    return out.decode()


async def _freeze_fs(machine: Machine) -> bool:
    """Freeze the guest's filesystems, if its agent answers; whether it did."""
    with contextlib.suppress(AgentError):
        if machine.agent.connected:
            await machine.agent.execute("guest-fsfreeze-freeze", timeout=5.0)
            return True
    return False


async def _thaw_fs(machine: Machine) -> None:
    with contextlib.suppress(AgentError):
        await machine.agent.execute("guest-fsfreeze-thaw", timeout=5.0)


async def live_image(core: Core, vm: str, staging: Path, chain: dict[str, Any] | None,
                     new_bitmap: str, repo: borg.Repo, cache: Path, progress: Progress
                     ) -> Image:
    """Copy the running VM's disk with QEMU's job: only what changed since ``chain``'s
    backup if its bitmap can be trusted (onto that backup's image: the local ``cache``, used
    up, else read out of ``repo``), else all of it."""
    target = staging / IMAGE
    base = chain["archive"] if chain else None
    if base is not None and chain:  # before the VM's lock: reading borg takes a while
        try:
            await _previous_image(repo, base, chain["size"], cache, target, progress)
        except (HostError, NotFoundError):  # that backup is gone (pruned, removed), or the
            base = None                       # repository is: a full one (borg says which)
    async with core.locks[vm]:
        rec = core.record(vm)
        machine = core.machines.get(vm) if rec.state in LIVE else None
        if machine is None:
            raise ConflictError(f"VM {vm} stopped as its backup began; back it up again")
        await job.clean_up(machine)
        size = int((await job.disk(machine))["image"]["virtual-size"])
        old = None
        if chain and base and chain["layer"] == rec.disk and chain["size"] == size \
                and await job.usable_bitmap(machine, chain["bitmap"]):
            old = chain["bitmap"]
        else:  # a full copy, onto zeros
            base = None
            await asyncio.to_thread(_sparse_file, target, size)
        bitmaps = job.Bitmaps(new_bitmap, old)
        image = Image(target, size, base, bitmaps=bitmaps, machine=machine, layer=rec.disk)
        frozen = await _freeze_fs(machine)
        try:
            fdset = await job.start(machine, image.path, bitmaps, core.jail)
        finally:
            if frozen:
                await _thaw_fs(machine)
    try:
        image.read = await job.wait(machine, lambda done, total: progress(
            0.5 * done / max(total, 1), f"copying {done // _MiB}/{total // _MiB} MiB from QEMU"))
    except VmkitError as e:
        if machine.exited.is_set() or not core.has_vm(vm):
            raise ConflictError(f"VM {vm} stopped or was removed during its backup; nothing "
                                "was stored") from e
        raise
    finally:
        with contextlib.suppress(VmkitError):
            await job.detach(machine, fdset)
    return image


async def _previous_image(repo: borg.Repo, archive: str, size: int, cache: Path, dest: Path,
                          progress: Progress) -> None:
    """The image of backup ``archive`` at ``dest``: the local ``cache`` of it if there is
    one, else read back out of borg."""
    if cache.exists():
        os.replace(cache, dest)
        return
    await borg.extract_to(repo, archive, IMAGE, dest, size, lambda done: progress(
        0.1 * done / max(size, 1), f"reading the previous image out of borg "
                                   f"({done // _MiB}/{size // _MiB} MiB)"))


def _sparse_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


async def memory_image(core: Core, vm: str, staging: Path) -> Image:
    """Save the running VM's memory as a snapshot does (the core freezes its disk at the same
    instant), and copy the frozen disk."""
    state = staging / "state"
    _, layer = await core.layers.freeze_now(vm, "snapshot", state)
    try:
        return await _chain_image(core.paths.disk(layer), staging, state)
    finally:
        core.layers.unpin(layer)


async def stopped_image(core: Core, vm: str, staging: Path) -> Image:
    """Copy a stopped VM's disk chain; it is kept from starting meanwhile."""
    async with core.locks[vm]:
        rec = core.record(vm)
        if rec.state in LIVE:
            raise ConflictError(f"VM {vm} started as its backup began; back it up again")
        return await _chain_image(core.disk_path(rec), staging, None)


async def _chain_image(top: Path, staging: Path, state: Path | None) -> Image:
    image = staging / IMAGE
    await qemu_img("convert", "-U", "-O", "raw", str(top), str(image))  # zeros stay holes
    return Image(image, await asyncio.to_thread(disks.virtual_size, top), state=state)


# --- into borg --------------------------------------------------------------------------

def meta(vm: str, spec: dict[str, Any], image: Image) -> dict[str, Any]:
    """What the archive's comment says of the backup."""
    return {"vm": vm, "kind": "incremental" if image.base else "full",
            "memory": image.state is not None, "disk_size": image.size, "read": image.read,
            "base": image.base, "spec": spec, "qemu": qemu.current().version,
            "state_size": image.state.stat().st_size if image.state else 0}


async def store(repo: borg.Repo, name: str, comment: dict[str, Any], image: Image,
                progress: Progress) -> dict[str, Any]:
    """Store the image (and the memory) as the new archive ``name``; the archive as borg
    tells of it once committed. Cancelled, borg stops and the repository keeps what it had."""
    files = [IMAGE, *([image.state.name] if image.state else [])]
    total = image.size + (image.state.stat().st_size if image.state else 0)
    return await borg.create(repo, name, json.dumps(comment), files, image.path.parent,
                             lambda done: progress(0.5 + 0.5 * min(done / total, 1.0),
                                                   f"storing {done // _MiB}/{total // _MiB} "
                                                   "MiB in borg"))


def new_name(vm: str, taken: set[str]) -> str:
    """The new backup's id: VM.TIME, unique in its repository."""
    name = f"{vm}.{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    n = 1
    while (candidate := name if n == 1 else f"{name}-{n}") in taken:
        n += 1
    return candidate


def staging_dir(root: Path, name: str) -> Path:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    return path


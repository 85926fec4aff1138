"""Making one backup: a point-in-time image of the VM's disk (and memory) into a borg archive.

Three ways to the image, one way into borg. A running VM: QEMU's backup job (job.py) copies
the disk, or only what its dirty bitmap marks since the previous backup, into a local qcow2
delta while the guest runs on, its filesystems frozen for the moment the copy starts. With
``--memory``: the core freezes the disk and saves the memory as a snapshot does, and the
frozen layers are read. A stopped VM: its disk chain is read. Then the delta becomes a raw
image (for an incremental backup, written over the previous one: raw.py) and borg stores it.
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
from ...errors import AgentError, ConflictError, HostError, VmkitError
from ...machine import disks, qemu
from ...machine.process import Machine
from ...state import LIVE
from . import borg, job, raw

Progress = Callable[[float, str], None]
IMAGE = "disk0.raw"  # the disk image's name in each archive
_MiB = 1 << 20


@dataclass
class Image:
    """What a backup's disk image is made of: ``delta`` (a local qcow2) over the previous
    backup ``base`` (or zeros), ``size`` bytes in all."""
    delta: Path
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
                     previous: set[str], new_bitmap: str, progress: Progress) -> Image:
    """Copy the running VM's disk with QEMU's job: only what changed since ``chain``'s
    backup if its bitmap can be trusted, else all of it."""
    async with core.locks[vm]:
        rec = core.record(vm)
        machine = core.machines.get(vm) if rec.state in LIVE else None
        if machine is None:
            raise ConflictError(f"VM {vm} stopped as its backup began; back it up again")
        await job.clean_up(machine)
        size = int((await job.disk(machine))["image"]["virtual-size"])
        old = None
        if chain and chain["layer"] == rec.disk and chain["size"] == size \
                and chain["archive"] in previous and await job.usable_bitmap(machine, chain["bitmap"]):
            old = chain["bitmap"]
        bitmaps = job.Bitmaps(new_bitmap, old)
        image = Image(staging / "delta.qcow2", size, chain["archive"] if chain and old else None,
                      bitmaps=bitmaps, machine=machine, layer=rec.disk)
        await qemu_img("create", "-q", "-f", "qcow2", str(image.delta), str(size))
        frozen = await _freeze_fs(machine)
        try:
            fdset = await job.start(machine, image.delta, bitmaps, core.jail)
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
    delta = staging / "delta.qcow2"
    await qemu_img("convert", "-U", "-O", "qcow2", str(top), str(delta))
    return Image(delta, await asyncio.to_thread(disks.virtual_size, delta), state=state)


# --- into borg --------------------------------------------------------------------------

def meta(vm: str, spec: dict[str, Any], image: Image) -> dict[str, Any]:
    """What the archive's comment says of the backup."""
    return {"vm": vm, "kind": "incremental" if image.base else "full",
            "memory": image.state is not None, "disk_size": image.size, "read": image.read,
            "base": image.base, "spec": spec, "qemu": qemu.current().version,
            "state_size": image.state.stat().st_size if image.state else 0}


async def store(repo: borg.Repo, name: str, comment: dict[str, Any], image: Image,
                cache: Path | None, progress: Progress) -> dict[str, Any]:
    """Put the raw image together next to the delta and store it (and the memory) as the new
    archive ``name``; borg's stats once it committed. ``cache``: the previous backup's image
    kept locally, if any (it is used up). Cancelled, borg stops and the repository keeps
    what it had."""
    staging = image.delta.parent
    await _raw_image(repo, image, staging / IMAGE, cache, progress)
    files = [IMAGE, *([image.state.name] if image.state else [])]
    total = image.size + (image.state.stat().st_size if image.state else 0)
    return await borg.create(repo, name, json.dumps(comment), files, staging, lambda done: progress(
        0.6 + 0.4 * min(done / total, 1.0), f"storing {done // _MiB}/{total // _MiB} MiB in borg"))


async def _raw_image(repo: borg.Repo, image: Image, dest: Path, cache: Path | None,
                     progress: Progress) -> None:
    """The image as a sparse raw file: the delta alone for a full backup, else the previous
    image (the local ``cache``, or read back out of borg) with the delta written over it."""
    if image.base is None:
        progress(0.5, "preparing the image")
        await qemu_img("convert", "-O", "raw", str(image.delta), str(dest))
        return
    if cache is not None and cache.exists():
        os.replace(cache, dest)
    else:
        await borg.extract_to(repo, image.base, IMAGE, dest, image.size, lambda done: progress(
            0.5 + 0.1 * done / image.size, f"reading the previous image out of borg "
                                           f"({done // _MiB}/{image.size // _MiB} MiB)"))
    changed = raw.extents(json.loads(await qemu_img("map", "--output=json", str(image.delta))))
    progress(0.6, "writing the changed clusters into the image")

    def write() -> None:
        with open(dest, "r+b") as f, open(image.delta, "rb") as delta:
            raw.patch(f, delta, changed)
    await asyncio.to_thread(write)


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


"""Disk layers: qcow2 files under disks/, each backed by the one below, ending in an image.

A VM writes only to its top layer. Taking a snapshot freezes the top layer and puts a new,
empty one above it; restoring or forking puts a new top layer above a snapshot's frozen one.
Layers are never renamed (their paths are written into the layers above them); a layer no
VM or snapshot reaches any more is garbage, collected by ``unreferenced``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import HostError


async def create_overlay(path: Path, backing: Path, backing_format: str, size: int | None = None,
                         in_use: bool = False) -> None:
    """A new empty qcow2 at ``path`` on top of ``backing`` (its size, unless ``size``).
    ``in_use``: a running QEMU writes to ``backing``, so it cannot be opened to check it."""
    await _qemu_img("create", "-q", "-f", "qcow2", "-b", str(backing), "-F", backing_format,
                    *(["-u"] if in_use else []), str(path),
                    *([str(size)] if size is not None else []), path=path)


async def _qemu_img(*args: str, path: Path) -> None:
    proc = await asyncio.create_subprocess_exec("qemu-img", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        path.unlink(missing_ok=True)
        raise HostError(f"qemu-img could not create a disk layer: {err.decode().strip()}")


async def create_empty(path: Path, size: int) -> None:
    """A new empty standalone qcow2 of ``size`` bytes (a disk arriving by migration)."""
    await _qemu_img("create", "-q", "-f", "qcow2", str(path), str(size), path=path)


async def grow(path: Path, size: int) -> None:
    """Make the disk whose top layer is ``path`` ``size`` bytes big (the guest sees more)."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "resize", "-q", "-f", "qcow2", str(path), str(size),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise HostError(f"qemu-img could not grow the disk {path.name}: {err.decode().strip()}")


def virtual_size(path: Path) -> int:
    """The size of the disk the guest sees."""
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise HostError(f"cannot read the disk {path}: {out.stderr.strip()}")
    return int(json.loads(out.stdout)["virtual-size"])


@functools.cache
def backing_file(layer: Path) -> Path | None:
    """The file below ``layer``. Cached: no layer's backing file ever changes, and layer
    names are never reused. -U: the VM using it may be running."""
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(layer)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:  # never guess: a wrong answer would delete layers still in use
        raise HostError(f"cannot read the disk layer {layer}: {out.stderr.strip()}")
    backing = json.loads(out.stdout).get("full-backing-filename")
    return Path(backing) if backing else None


def read_head(disk: Path, size: int) -> bytes:
    """The first ``size`` bytes the guest sees on a qcow2 disk."""
    with tempfile.TemporaryDirectory(dir=disk.parent) as tmp:
        out = Path(tmp) / "head"
        result = subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"bs={size}",
                                 "count=1", f"if={disk}", f"of={out}"],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise HostError(f"cannot read the disk {disk}: {result.stderr.strip()}")
        return out.read_bytes()


def unreferenced(layer_dir: Path, tops: Iterable[Path]) -> list[Path]:
    """Layers in ``layer_dir`` that no chain starting at one of ``tops`` uses."""
    used: set[Path] = set()
    for top in tops:
        layer: Path | None = top
        while layer is not None and layer not in used and layer.parent == layer_dir:
            used.add(layer)
            layer = backing_file(layer)
    return [p for p in layer_dir.glob("*.qcow2") if p not in used]


def chain_allocated(top: Path) -> int:
    """Bytes the layers of a disk take on disk, the image at the bottom included."""
    total, layer = 0, top
    while True:
        total += allocated(layer)
        below = backing_file(layer) if layer.suffix == ".qcow2" else None
        if below is None:
            return total
        layer = below


def allocated(path: Path) -> int:
    """Bytes a (sparse) file really takes on disk; 0 if it is gone."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0

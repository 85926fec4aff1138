"""The raw disk image borg stores for each backup, put together in a file: for an incremental
backup, the previous image with the clusters QEMU copied since written over it. Pure: files
and iterators in, files out.

An incremental backup reads from the VM's disk only what the dirty bitmap marks; the rest of
the image is the previous backup's (kept in the staging space, else read back out of borg),
so each archive is a whole image on its own: any backup restores or is pruned without the
others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ...errors import HostError

BLOCK = 4 << 20  # bytes read and written at a time; borg's fixed chunk size
_ZERO = bytes(BLOCK)


class Stopped(Exception):
    """The copy was called off (its operation was cancelled)."""


@dataclass(frozen=True)
class Extent:
    """Clusters QEMU copied into the delta file: guest bytes [start, start+length) are at
    ``offset`` in it, or are zeros (``offset`` None)."""
    start: int
    length: int
    offset: int | None


def extents(qemu_img_map: list[dict[str, Any]]) -> list[Extent]:
    """The copied clusters of a standalone qcow2 delta, from ``qemu-img map --output=json``:
    those present in it (written by the backup job); the others did not change."""
    found = []
    for e in qemu_img_map:
        if not e.get("present"):
            continue
        if e.get("data") and "offset" not in e:  # compressed: never written by a backup job
            raise HostError(f"the backup's delta has clusters without an offset at {e['start']}")
        found.append(Extent(int(e["start"]), int(e["length"]),
                            int(e["offset"]) if e.get("data") else None))
    return sorted(found, key=lambda e: e.start)


def patch(image: BinaryIO, delta: BinaryIO, changed: list[Extent]) -> None:
    """Write the ``changed`` extents, read from ``delta``, into ``image`` in place."""
    for e in changed:
        done = 0
        while done < e.length:
            n = min(BLOCK, e.length - done)
            if e.offset is None:
                data = _ZERO[:n]
            else:
                delta.seek(e.offset + done)
                data = delta.read(n)
                if len(data) != n:
                    raise HostError("the backup's delta file is shorter than its map says")
            image.seek(e.start + done)
            image.write(data)
            done += n


def sparse_copy(blocks: Iterable[bytes], out: BinaryIO, stop: threading.Event,
                progress: Callable[[int], None]) -> int:
    """Write ``blocks`` to ``out``, whole zero blocks as holes; the bytes written in all."""
    done = 0
    for block in blocks:
        if stop.is_set():
            raise Stopped
        if block == _ZERO:
            out.seek(len(block), 1)
        else:
            out.write(block)
        done += len(block)
        progress(done)
    out.truncate(done)
    return done

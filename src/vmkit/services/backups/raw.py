"""Writing a backup's raw disk image out of borg as a sparse file: whole zero blocks become
holes, so a restored or reused image takes only the space its data needs. Pure: an iterator
in, a file out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import BinaryIO

BLOCK = 4 << 20  # bytes read and written at a time; borg's fixed chunk size
_ZERO = bytes(BLOCK)


class Stopped(Exception):
    """The copy was called off (its operation was cancelled)."""


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

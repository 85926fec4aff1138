"""Write an uncompressed cpio archive in the "newc" format the Linux kernel unpacks as initramfs.

The kernel reads an uncompressed archive fastest, and writing one needs no tool beyond Python.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


def _header(ino: int, mode: int, nlink: int, size: int, name: bytes) -> bytes:
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields) + name + b"\0"


def _pad(out: BinaryIO) -> None:
    out.write(b"\0" * (-out.tell() % 4))


def write_cpio(root: Path, out: BinaryIO) -> None:
    """Archive the tree under ``root`` (files, directories, symlinks), owned by root."""
    ino = 1
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*sorted(dirnames), *sorted(filenames)]:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = path.relative_to(root).as_posix().encode()
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(st.st_mode):
                data = path.read_bytes()
            else:
                data = b""
            out.write(_header(ino, st.st_mode, 2 if stat.S_ISDIR(st.st_mode) else 1, len(data), rel))
            _pad(out)
            out.write(data)
            _pad(out)
            ino += 1
    out.write(_header(0, 0, 1, 0, b"TRAILER!!!"))
    _pad(out)

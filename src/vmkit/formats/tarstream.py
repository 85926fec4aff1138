"""A tar archive written as a stream whose length is known before the first byte.

An export leaves vmkitd as one HTTP response with a Content-Length, so the client can show a
progress bar, and nothing is written twice: members are read straight from their files.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 512
CHUNK = 1 << 20
END = b"\0" * (2 * BLOCK)  # two empty blocks end an archive


@dataclass(frozen=True)
class Member:
    """One file of the archive: its bytes are ``data``, or the content of ``path``."""
    name: str
    path: Path | None = None
    data: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]

    def header(self) -> bytes:
        info = tarfile.TarInfo(self.name)
        info.size, info.mode, info.mtime = self.size, 0o644, 0
        return info.tobuf(tarfile.GNU_FORMAT)  # GNU: sizes past 8 GiB fit in one header

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            while data := f.read(CHUNK):
                yield data


def _padding(size: int) -> int:
    return -size % BLOCK


def length(members: list[Member]) -> int:
    return sum(len(m.header()) + m.size + _padding(m.size) for m in members) + len(END)


def chunks(members: list[Member]) -> Iterator[bytes]:
    for m in members:
        size = m.size
        yield m.header()
        written = 0
        for data in m.chunks():
            written += len(data)
            yield data
        if written != size:  # a file that changed under us would corrupt the archive
            raise OSError(f"{m.name} changed while it was being exported")
        yield b"\0" * _padding(size)
    yield END


def digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while data := f.read(CHUNK):
            h.update(data)
    return h.hexdigest()


def is_tar(path: Path) -> bool:
    """Whether ``path`` starts with a tar header. (tarfile.is_tarfile says yes to a file of
    zeros, which a raw disk image may well begin with.)"""
    with open(path, "rb") as f:
        head = f.read(BLOCK)
    return len(head) == BLOCK and head[257:262] == b"ustar"

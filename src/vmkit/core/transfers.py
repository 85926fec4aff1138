"""Private work directories for big files in flight: uploads, exports, imports, dumps."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError, NoSpaceError
from ..paths import HomePaths, new_id


@dataclass
class Download:
    """A file vmkitd sends: its name for the client, its length, and its bytes."""
    filename: str
    length: int
    chunks: Iterator[bytes]


def then_remove(chunks: Iterator[bytes], work: Path) -> Iterator[bytes]:
    """``chunks``, then ``work`` removed (also when the stream is abandoned)."""
    try:
        yield from chunks
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Transfers:
    def __init__(self, paths: HomePaths) -> None:
        self.paths = paths

    @property
    def root(self) -> Path:
        return self.paths.transfers

    def workdir(self) -> Path:
        """A new private directory for one export, import, upload or download."""
        self.root.mkdir(mode=0o700, exist_ok=True)
        work = self.root / new_id()
        work.mkdir(mode=0o700)
        return work

    def clean(self) -> None:
        """Remove what the transfers of an earlier daemon left behind."""
        shutil.rmtree(self.root, ignore_errors=True)

    async def receive(self, chunks: AsyncIterator[bytes]) -> Path:
        """Store an uploaded file in a work directory of its own (removed if this fails)."""
        work = self.workdir()
        upload = work / "upload"
        try:
            with open(upload, "wb") as f:
                async for data in chunks:
                    f.write(data)
        except BaseException as e:
            shutil.rmtree(work, ignore_errors=True)
            if isinstance(e, OSError) and e.errno == 28:
                raise NoSpaceError(f"VMKIT_HOME ({self.paths.root}) is full: the file "
                                   "does not fit; free some space") from e
            raise
        if upload.stat().st_size == 0:
            shutil.rmtree(work, ignore_errors=True)
            raise InvalidInputError("the file to import is empty")
        return upload

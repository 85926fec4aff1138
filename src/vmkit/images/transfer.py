"""An image's files between two vmkit hosts, as a sparse GNU tar stream: a migration brings
the VM's base image to a destination that has none (migration.py).

The source's ``tar --sparse`` sends only the allocated parts of a raw root filesystem (a 1 GiB
tiny root is about 70 MiB of data). The destination takes exactly the files the image lists,
as regular files, with tarfile's "data" filter; the image store then checks them against the
digest they were sent under, so a damaged or altered image is never stored.
"""

from __future__ import annotations

import asyncio
import tarfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from ..errors import HostError, ImageError


async def tar_stream(directory: Path, files: Iterable[str]) -> AsyncIterator[bytes]:
    """The image's ``files`` as a sparse tar, in chunks."""
    proc = await asyncio.create_subprocess_exec(
        "tar", "--sparse", "--format=gnu", "-C", str(directory), "-cf", "-", *files,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout and proc.stderr
    try:
        while chunk := await proc.stdout.read(1 << 20):
            yield chunk
    finally:
        if proc.returncode is None:
            proc.kill()
        if await proc.wait() > 0:
            raise HostError(f"tar could not read the image: "
                            f"{(await proc.stderr.read()).decode(errors='replace')[-200:]}")


def unpack(archive: Path, out: Path, files: list[str]) -> None:
    """Unpack ``files`` of ``archive`` into ``out``, refusing anything else in it."""
    with tarfile.open(archive, "r:") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        if sorted(names) != sorted(files) or not all(m.isreg() for m in members):
            raise ImageError(f"the image sent holds {names}, not the files {files}: refused")
        tar.extractall(out, members=members, filter="data")

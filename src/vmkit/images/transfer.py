"""An image's files between two vmkit hosts, as a sparse GNU tar stream: a migration brings
the VM's base image to a destination that has none (migration.py).

The tar holds ``image.json`` (the image's kind and metadata) and the image's files. The
source's ``tar --sparse`` sends only the allocated parts of a raw root filesystem (a 1 GiB tiny
root is about 70 MiB of data). The destination takes exactly the files the manifest lists, as
regular files, with tarfile's "data" filter; the image store then checks them against the
digest they were sent under, so a damaged or altered image is never stored.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..errors import HostError, ImageError

MANIFEST = "image.json"
MAX_MANIFEST = 64 << 10


async def tar_stream(directory: Path, files: list[str], manifest: dict[str, Any]
                     ) -> AsyncIterator[bytes]:
    """The manifest and the image's ``files`` as a sparse tar, in chunks."""
    with tempfile.TemporaryDirectory(prefix="vmkit-send-") as tmp:
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest))
        proc = await asyncio.create_subprocess_exec(
            "tar", "--sparse", "--format=gnu", "-cf", "-", "-C", tmp, MANIFEST,
            "-C", str(directory), *files,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout and proc.stderr
        try:
            while chunk := await proc.stdout.read(1 << 20):
                yield chunk
        except BaseException:  # the receiver went away: so does tar
            proc.kill()
            await proc.wait()
            raise
        errors = await proc.stderr.read()
        if code := await proc.wait():
            raise HostError(f"tar could not read the image (exit {code}): "
                            f"{errors.decode(errors='replace')[-200:]}")


def read_manifest(archive: Path) -> dict[str, Any]:
    """The image's kind and metadata, as the sender wrote them."""
    with _open(archive) as tar:
        try:
            member = tar.getmember(MANIFEST)
        except KeyError:
            raise ImageError("the image sent has no manifest: refused") from None
        data = tar.extractfile(member) if member.isreg() and member.size <= MAX_MANIFEST else None
        try:
            manifest = json.loads(data.read()) if data else None
        except ValueError:
            manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("meta"), dict):
        raise ImageError("the image sent has no readable manifest: refused")
    return manifest


def unpack(archive: Path, out: Path, files: list[str]) -> None:
    """Unpack ``files`` of ``archive`` into ``out``, refusing anything else in it."""
    with _open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name != MANIFEST]
        names = [m.name for m in members]
        if sorted(names) != sorted(files) or not all(m.isreg() for m in members):
            raise ImageError(f"the image sent holds {names[:8]}, not the files {files}: "
                             "refused")
        try:
            tar.extractall(out, members=members, filter="data")
        except (tarfile.TarError, EOFError) as e:
            raise ImageError(f"the image sent is not a whole tar ({e}): refused") from None


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:")
    except (tarfile.TarError, EOFError) as e:
        raise ImageError(f"the image sent is not a whole tar of its files ({e}): refused"
                         ) from None

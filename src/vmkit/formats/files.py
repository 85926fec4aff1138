"""The client's side of export: write the stream to a file, or unpack it into a directory,
so that a failed or interrupted export leaves nothing at the destination."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import InvalidInputError

Progress = Callable[[int], None]


def check_destination(dest: Path, directory: bool) -> None:
    """Fail before any work if the export could not be written to ``dest``."""
    if dest.exists() and not (directory and dest.is_dir() and not any(dest.iterdir())):
        what = "an empty directory" if directory else "a new file"
        raise InvalidInputError(f"{dest} exists; give {what}, or remove it first")
    if not dest.parent.is_dir() or not os.access(dest.parent, os.W_OK):
        raise InvalidInputError(f"cannot write into {dest.parent}: it is not a writable "
                                "directory")
    if directory:
        check_reachable_by_libvirt(dest)


# Where a packaged libvirt (qemu:///system) keeps disks: its QEMU, run as user libvirt-qemu,
# can reach them. libvirt makes the files themselves readable (dynamic_ownership), never the
# directories above them.
LIBVIRT_POOL = Path("/var/lib/libvirt/images")


def check_reachable_by_libvirt(dest: Path) -> None:
    """Refuse a libvirt export into ``dest`` whose files libvirt's QEMU could not open: every
    directory above it must let other users through (o+x), which a private one (a home,
    pytest's tmp) does not, and 'virsh start' would fail with "Cannot access storage file
    ... Permission denied"."""
    for d in dest.parents:
        mode = d.stat().st_mode
        if not mode & 0o001:
            raise InvalidInputError(
                f"libvirt's QEMU (user libvirt-qemu) could not open files under {d}: it is "
                f"private (mode {mode & 0o777:o}); write the export under {LIBVIRT_POOL} "
                f"(-o {LIBVIRT_POOL}/{dest.name}), or let other users through with "
                f"'chmod o+x {d}'")


def save(chunks: Iterable[bytes], dest: Path, on_progress: Progress | None = None) -> str:
    """Write ``chunks`` to ``dest`` atomically; returns their SHA-256."""
    part = dest.with_name(f".{dest.name}.part")
    h = hashlib.sha256()
    try:
        with open(part, "wb") as f:
            for data in chunks:
                f.write(data)
                h.update(data)
                if on_progress:
                    on_progress(len(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return h.hexdigest()


def unpack(chunks: Iterable[bytes], dest: Path, on_progress: Progress | None = None) -> str:
    """Write the archive ``chunks`` as the files of a new directory ``dest``."""
    archive = dest.with_name(f".{dest.name}.tar.part")
    work = dest.with_name(f".{dest.name}.part")
    try:
        digest = save(chunks, archive, on_progress)
        work.mkdir(mode=0o755)
        with tarfile.open(archive, "r:") as tar:
            for member in tar:
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise InvalidInputError(f"unexpected member {member.name!r} in the export")
                with tar.extractfile(member) as src, open(work / member.name, "wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, 1 << 20)
        if dest.is_dir():
            dest.rmdir()  # empty (checked before): replaced by the complete one
        os.rename(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)
    return digest

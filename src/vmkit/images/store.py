"""The image store: content-addressed, read-only base images under VMKIT_HOME/images.

An image is a directory named by the SHA-256 of its files. It is built in a temporary
directory next to the store and renamed into place, so it is either complete or absent.
Files are checked against the digest before first use (per daemon, per file version).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import ConflictError, ImageError, NotFoundError
from ..machine.argv import BootFiles
from ..store import ImageRecord, Store
from .tiny import Progress, build_tiny

FILES = ("vmlinux", "initrd.cpio", "rootfs.raw")
BUILDERS = {"tiny": build_tiny}


BLOCK = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)


def file_digest(path: Path, h: "hashlib._Hash") -> None:
    """Feed ``path``'s content into ``h`` in 1 MiB blocks, reading only the allocated parts.

    A block of zeros hashes the same whether it is stored or a hole, so the digest depends
    on the content alone, not on how the filesystem happens to lay the file out.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        fd = f.fileno()
        data_at = 0
        for pos in range(0, size, BLOCK):
            if data_at < pos + BLOCK and data_at != -1:
                try:
                    data_at = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError:  # nothing but hole up to the end
                    data_at = -1
            if data_at == -1 or data_at >= pos + BLOCK:
                h.update(b"Z")
                continue
            f.seek(pos)
            block = f.read(BLOCK)
            h.update(b"Z" if block == _ZERO_BLOCK[: len(block)] else b"D" + block)
    h.update(size.to_bytes(8, "little"))


def image_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0")
        file_digest(directory / name, h)
    return h.hexdigest()


class ImageStore:
    def __init__(self, root: Path, cache: Path, store: Store) -> None:
        self.root = root
        self.cache = cache
        self.store = store
        self._verified: dict[str, tuple[tuple[int, int, int], ...]] = {}

    def get(self, name: str) -> ImageRecord:
        image = self.store.image(name)
        if image is None:
            hint = f"build it with 'vmkit image build {name}'" if name in BUILDERS else (
                f"the images here are: {', '.join(i.name for i in self.store.images()) or 'none'}")
            raise NotFoundError(f"image {name!r} not found; {hint}")
        return image

    def path(self, image: ImageRecord) -> Path:
        return self.root / image.digest

    def build(self, name: str, progress: Progress) -> ImageRecord:
        if name not in BUILDERS:
            raise NotFoundError(f"no builder for image {name!r}; vmkit can build: {', '.join(BUILDERS)}")
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".build-", dir=self.root) as tmp:
            out = Path(tmp, "image")
            out.mkdir()
            BUILDERS[name](out, self.cache, progress)
            digest = image_digest(out)
            final = self.root / digest
            for f in FILES:
                (out / f).chmod(0o444)
            if not final.exists():
                out.rename(final)  # atomic: the image appears whole or not at all
        size = sum((final / f).stat().st_blocks * 512 for f in FILES)
        meta = {"rootfs_bytes": (final / "rootfs.raw").stat().st_size}
        image = ImageRecord(name, digest, name, size, meta, time.time())
        self.store.put_image(image)
        return image

    def boot_files(self, image: ImageRecord) -> BootFiles:
        """The image's files, checked against its digest (once per file version)."""
        d = self.path(image)
        try:
            stamp = tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in
                          (os.stat(d / f) for f in FILES))
        except OSError as e:
            raise ImageError(
                f"image {image.name!r} is damaged ({e.filename} is missing); remove it with "
                f"'vmkit image rm {image.name}' and build it again") from None
        if self._verified.get(image.digest) != stamp:
            if image_digest(d) != image.digest:
                raise ImageError(
                    f"image {image.name!r} is corrupt (its files no longer match their checksum); "
                    f"remove it with 'vmkit image rm {image.name}' and build it again")
            self._verified[image.digest] = stamp
        return BootFiles(d / "vmlinux", d / "initrd.cpio", d / "rootfs.raw",
                         int(image.meta["rootfs_bytes"]))

    def remove(self, name: str, users: list[str]) -> None:
        image = self.get(name)
        if users:
            raise ConflictError(
                f"image {name!r} is used by {', '.join(users)}; remove them first")
        self.store.remove_image(name)
        if not any(i.digest == image.digest for i in self.store.images()):
            shutil.rmtree(self.path(image), ignore_errors=True)

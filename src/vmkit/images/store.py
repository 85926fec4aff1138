"""The image store: content-addressed, read-only base images under VMKIT_HOME/images.

An image is a directory named by the SHA-256 of its files. It is built (or imported) in a
temporary directory next to the store and renamed into place, so it is either complete or
absent; its files are made read-only and never change. Files are checked against the digest
before first use (per daemon, per file version). Every VM writes to its own overlay.

Kinds of image, and how a VM boots them:
  tiny    vmkit's busybox guest: kernel + initrd + ext4 root on the microvm machine
  debian  built with debootstrap: Debian's kernel + initrd + ext4 root on a q35 PC
  disk    an imported disk (qcow2 or raw): the firmware boots it, BIOS or UEFI
  iso     an imported CD image: an installer or live system for --cdrom
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ConflictError, ImageError, InvalidInputError, NotFoundError
from ..machine.argv import BootFiles
from ..store import ImageRecord, Store
from . import importer, transfer
from .debian import DebianOptions, build_debian, clean_staging, unmount_under
from .tiny import Progress, build_tiny

FILES = ("vmlinux", "initrd.cpio", "rootfs.raw")  # a tiny image's; others list theirs in meta
BUILDERS = ("tiny", "debian")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # an image's file, in its directory


class Cancelled(Exception):
    """The user stopped the build or import; nothing was stored."""


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


def image_digest(directory: Path, files: Iterable[str] = FILES) -> str:
    h = hashlib.sha256()
    for name in files:
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
                f"the images here are: {', '.join(i.name for i in self.store.images()) or 'none'}"
                "; 'vmkit image import FILE --name NAME' adds one")
            raise NotFoundError(f"image {name!r} not found; {hint}")
        return image

    def path(self, image: ImageRecord) -> Path:
        return self.root / image.digest

    def clean(self) -> None:
        """Drop what a daemon that died while building or importing left behind."""
        for leftover in self.root.glob(".build-*"):
            unmount_under(leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        clean_staging()

    def build(self, name: str, progress: Progress, builder: str | None = None,
              options: DebianOptions | None = None) -> ImageRecord:
        """Build image ``name`` with ``builder`` (tiny or debian; by default the one named
        like the image)."""
        builder = builder or name
        if builder not in BUILDERS:
            raise NotFoundError(f"no builder for image {name!r}; vmkit can build: "
                                f"{', '.join(BUILDERS)} (other images: 'vmkit image import')")

        def run(out: Path) -> tuple[str, dict[str, Any]]:
            if builder == "debian":
                return "debian", build_debian(out, self.cache, progress, options or DebianOptions())
            build_tiny(out, self.cache, progress)
            return "tiny", {"rootfs_bytes": (out / "rootfs.raw").stat().st_size}
        return self._store(name, run)

    def import_file(self, name: str, source: Path, progress: Progress) -> ImageRecord:
        """Add the disk or ISO at ``source``: qcow2 and raw as they are, vmdk and vdi
        converted to qcow2. The format is what qemu-img finds, not the file's name."""
        if self.store.image(name) is not None:
            raise ConflictError(f"image {name!r} exists; choose another --name or remove it "
                                f"with 'vmkit image rm {name}'")
        progress(0.0, f"inspecting {source.name}")
        info = importer.inspect(source)

        def run(out: Path) -> tuple[str, dict[str, Any]]:
            file = importer.bring_in(source, out, info, lambda f, m: progress(0.9 * f, m))
            stat = source.stat()
            return info.kind, {"files": [file], "rootfs_bytes": info.virtual_size,
                               "format": "qcow2" if file.endswith(".qcow2") else "raw",
                               "bootable": info.bootable, "agent": False,
                               "source": {"path": str(source), "size": stat.st_size,
                                          "mtime_ns": stat.st_mtime_ns}}
        return self._store(name, run)

    def receive(self, name: str, digest: str, archive: Path) -> ImageRecord:
        """Store image ``name`` from another host's tar (transfer.py), checked against the
        ``digest`` it was sent under."""
        manifest = transfer.read_manifest(archive)
        kind, meta = manifest.get("kind"), manifest["meta"]
        files = meta.get("files", list(FILES))
        if kind not in ("tiny", "debian", "disk", "iso") or not isinstance(files, list) or \
                not 0 < len(files) <= 8 or not all(isinstance(f, str) and _FILE_NAME.fullmatch(f)
                                                   for f in files):
            raise InvalidInputError(f"cannot take an image of kind {kind!r} with the files "
                                    f"{str(files)[:200]}")
        if not isinstance(meta.get("rootfs_bytes"), int) or meta["rootfs_bytes"] <= 0 or \
                not isinstance(meta.get("source", {}), dict):
            raise InvalidInputError("the image's metadata lacks its disk size (rootfs_bytes)")
        if (have := self.store.image(name)) is not None:
            if have.digest != digest:
                raise ConflictError(f"image {name!r} here is another image ({have.digest[:12]}"
                                    f", not {digest[:12]}); remove it or migrate elsewhere")
            return have

        def run(out: Path) -> tuple[str, dict[str, Any]]:
            transfer.unpack(archive, out, files)
            return str(kind), dict(meta)
        return self._store(name, run, expected=digest)

    def _store(self, name: str, make: Callable[[Path], tuple[str, dict[str, Any]]],
               expected: str | None = None) -> ImageRecord:
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".build-", dir=self.root) as tmp:
            out = Path(tmp, "image")
            out.mkdir()
            kind, meta = make(out)
            files = meta.setdefault("files", list(FILES))
            digest = image_digest(out, files)
            if expected is not None and digest != expected:
                raise ImageError(f"image {name!r} arrived damaged (its files do not match "
                                 "the digest they were sent under); nothing was stored")
            final = self.root / digest
            for f in files:
                (out / f).chmod(0o444)
            if not final.exists():
                out.rename(final)  # atomic: the image appears whole or not at all
        size = sum((final / f).stat().st_blocks * 512 for f in files)
        image = ImageRecord(name, digest, kind, size, meta, time.time())
        self.store.put_image(image)
        return image

    def verified(self, image: ImageRecord) -> Path:
        """The image's directory, its files checked against its digest (once per version)."""
        d = self.path(image)
        files = image.meta.get("files", FILES)
        try:
            stamp = tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in
                          (os.stat(d / f) for f in files))
        except OSError as e:
            raise ImageError(
                f"image {image.name!r} is damaged ({e.filename} is missing); remove it with "
                f"'vmkit image rm {image.name}' and build or import it again") from None
        if self._verified.get(image.digest) != stamp:
            if image_digest(d, files) != image.digest:
                raise ImageError(
                    f"image {image.name!r} is corrupt (its files no longer match their checksum); "
                    f"remove it with 'vmkit image rm {image.name}' and build or import it again")
            self._verified[image.digest] = stamp
        return d

    def boot_files(self, image: ImageRecord) -> BootFiles:
        """How a VM boots ``image`` (without the VM's own media: see core/boot.py)."""
        if image.kind == "iso":
            raise InvalidInputError(
                f"image {image.name!r} is a CD image: boot it with --cdrom {image.name} (and "
                "--disk SIZE for a disk to install on)")
        d = self.verified(image)
        size, meta = int(image.meta["rootfs_bytes"]), image.meta
        if image.kind == "tiny":
            return BootFiles(d / "vmlinux", d / "initrd.cpio", d / "rootfs.raw", size)
        if image.kind == "debian":
            return BootFiles(d / "vmlinuz", d / "initrd.img", d / "rootfs.raw", size,
                             profile="pc", cmdline=meta["cmdline"])
        return BootFiles(None, None, d / meta["files"][0], size, meta["format"],
                         profile="pc", agent=False)

    def cdrom(self, name: str) -> Path:
        image = self.get(name)
        if image.kind != "iso":
            raise InvalidInputError(f"image {name!r} is not a CD image (it is a {image.kind} "
                                    "image); --cdrom takes an ISO file or an imported ISO")
        file: str = image.meta["files"][0]
        return self.verified(image) / file

    def remove(self, name: str, users: list[str]) -> None:
        image = self.get(name)
        if users:
            raise ConflictError(
                f"image {name!r} is used by {', '.join(users)}; remove them first")
        self.store.remove_image(name)
        if not any(i.digest == image.digest for i in self.store.images()):
            shutil.rmtree(self.path(image), ignore_errors=True)

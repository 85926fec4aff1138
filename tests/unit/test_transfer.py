"""images/transfer.py: an image's files between hosts, and what the receiver refuses."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest

from vmkit.errors import ImageError
from vmkit.images.transfer import MANIFEST, read_manifest, tar_stream, unpack


def _sent(directory: Path, files: list[str], manifest: dict) -> bytes:
    async def collect() -> bytes:
        return b"".join([c async for c in tar_stream(directory, files, manifest)])
    return asyncio.run(collect())


def test_a_sparse_file_arrives_whole_and_sparse(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    with open(src / "rootfs.raw", "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"data" * 1024)
    (src / "vmlinux").write_bytes(b"kernel")
    archive = tmp_path / "image.tar"
    manifest = {"kind": "tiny", "meta": {"rootfs_bytes": 64 << 20}}
    archive.write_bytes(_sent(src, ["vmlinux", "rootfs.raw"], manifest))
    assert archive.stat().st_size < 1 << 20  # the hole did not travel
    assert read_manifest(archive) == manifest
    unpack(archive, out, ["vmlinux", "rootfs.raw"])
    assert sorted(p.name for p in out.iterdir()) == ["rootfs.raw", "vmlinux"]
    assert (out / "rootfs.raw").read_bytes() == (src / "rootfs.raw").read_bytes()
    assert (out / "vmlinux").read_bytes() == b"kernel"


def _tar(tmp_path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    archive = tmp_path / "sent.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in {MANIFEST: b'{"kind": "tiny", "meta": {}}', **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return archive


@pytest.mark.parametrize("members, link", [
    ({"vmlinux": b"k"}, None),  # a file missing
    ({"vmlinux": b"k", "rootfs.raw": b"r", "extra": b"x"}, None),  # one too many
    ({"../vmlinux": b"k", "rootfs.raw": b"r"}, None),  # a path that climbs
    ({"rootfs.raw": b"r"}, "vmlinux"),  # a link in place of a file
])
def test_anything_but_the_listed_files_is_refused(tmp_path: Path, members: dict[str, bytes],
                                                   link: str | None) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImageError, match="refused"):
        unpack(_tar(tmp_path, members, link), out, ["vmlinux", "rootfs.raw"])
    assert list(out.iterdir()) == []


def test_garbage_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "sent.tar"
    archive.write_bytes(b"\x89PNG not a tar at all" * 100)
    with pytest.raises(ImageError, match="not a whole tar"):
        read_manifest(archive)
    with pytest.raises(ImageError, match="not a whole tar"):
        unpack(archive, tmp_path, ["vmlinux"])


def test_a_tar_without_a_manifest_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "sent.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("vmlinux")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ImageError, match="no manifest"):
        read_manifest(archive)

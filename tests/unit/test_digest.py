"""images/store.py: file_digest/image_digest are digests of content, holes or not."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vmkit.images.store import FILES, file_digest, image_digest

BLOCK = 1 << 16


def digest(path: Path) -> str:
    h = hashlib.sha256()
    file_digest(path, h)
    return h.hexdigest()


def dense(path: Path, size: int, chunks: dict[int, bytes] | None = None) -> Path:
    """Every byte written, zeros included."""
    buf = bytearray(size)
    for offset, data in (chunks or {}).items():
        buf[offset: offset + len(data)] = data
    path.write_bytes(bytes(buf))
    return path


def sparse(path: Path, size: int, chunks: dict[int, bytes] | None = None) -> Path:
    """Only ``chunks`` written; the rest is holes."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in (chunks or {}).items():
            f.seek(offset)
            f.write(data)
    return path


def require_holes(path: Path) -> None:
    st = path.stat()
    if st.st_blocks * 512 >= st.st_size:
        pytest.skip("this filesystem does not keep sparse files sparse")


def test_same_dense_content_same_digest(tmp_path: Path) -> None:
    a = dense(tmp_path / "a", 3 * BLOCK, {100: b"hello"})
    b = dense(tmp_path / "b", 3 * BLOCK, {100: b"hello"})
    assert digest(a) == digest(b)


def test_same_sparse_layout_same_digest(tmp_path: Path) -> None:
    a = sparse(tmp_path / "a", 64 * BLOCK, {0: b"head", 40 * BLOCK: b"middle"})
    b = sparse(tmp_path / "b", 64 * BLOCK, {0: b"head", 40 * BLOCK: b"middle"})
    require_holes(a)
    assert digest(a) == digest(b)


def test_all_zeros_sparse_or_not(tmp_path: Path) -> None:
    a = dense(tmp_path / "a", 16 * BLOCK)
    b = sparse(tmp_path / "b", 16 * BLOCK)
    require_holes(b)
    assert a.read_bytes() == b.read_bytes()
    assert digest(a) == digest(b)


def test_partly_sparse_or_not(tmp_path: Path) -> None:
    chunks = {0: b"boot sector", 20 * BLOCK: b"superblock", 63 * BLOCK: b"tail"}
    a = dense(tmp_path / "a", 64 * BLOCK, chunks)
    b = sparse(tmp_path / "b", 64 * BLOCK, chunks)
    require_holes(b)
    assert a.read_bytes() == b.read_bytes()
    assert digest(a) == digest(b)


def test_uneven_size_sparse_or_not(tmp_path: Path) -> None:
    """Data straddling MiB boundaries, and a size that is not a whole number of blocks."""
    size = (11 << 20) // 2 + 7
    chunks = {(1 << 20) - 3: b"across-a-boundary", (4 << 20) + 1: b"x", size - 2: b"yz"}
    a = dense(tmp_path / "a", size, chunks)
    b = sparse(tmp_path / "b", size, chunks)
    require_holes(b)
    assert digest(a) == digest(b)


@pytest.mark.parametrize("make", [dense, sparse])
@pytest.mark.parametrize("offset", [0, 5, 20 * BLOCK + 3, 40 * BLOCK, 64 * BLOCK - 1])
def test_one_byte_changes_digest(tmp_path: Path, make: Callable[..., Path], offset: int) -> None:
    chunks = {0: b"boot sector", 20 * BLOCK: b"superblock"}
    a = make(tmp_path / "a", 64 * BLOCK, chunks)
    before = digest(a)
    with open(a, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x01]))
    assert digest(a) != before


def test_size_is_part_of_digest(tmp_path: Path) -> None:
    a = sparse(tmp_path / "a", 4 * BLOCK, {0: b"x"})
    b = sparse(tmp_path / "b", 5 * BLOCK, {0: b"x"})
    assert digest(a) != digest(b)


def test_empty_file_differs_from_one_zero_byte(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.write_bytes(b"")
    b = tmp_path / "b"
    b.write_bytes(b"\0")
    assert digest(a) != digest(b)


def make_image(d: Path, rootfs: bytes = b"ext4" + b"\0" * 1000) -> Path:
    d.mkdir()
    (d / "vmlinux").write_bytes(b"\x7fELF kernel")
    (d / "initrd.cpio").write_bytes(b"070701 initrd")
    (d / "rootfs.raw").write_bytes(rootfs)
    return d


def test_image_digest(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a")
    b = make_image(tmp_path / "b")
    d = image_digest(a)
    assert len(d) == 64 and int(d, 16) >= 0
    assert image_digest(b) == d
    (b / "rootfs.raw").write_bytes(b"ext4" + b"\0" * 999 + b"\1")
    assert image_digest(b) != d


def test_image_digest_names_the_files(tmp_path: Path) -> None:
    """Moving bytes from one file to another must change the digest."""
    a = make_image(tmp_path / "a")
    b = make_image(tmp_path / "b")
    (b / "vmlinux").write_bytes(b"\x7fELF kerne")
    (b / "initrd.cpio").write_bytes(b"l070701 initrd")
    assert image_digest(a) != image_digest(b)


def test_image_digest_ignores_other_files(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a")
    d = image_digest(a)
    (a / "notes.txt").write_text("not part of the image")
    assert image_digest(a) == d
    assert set(FILES) == {"vmlinux", "initrd.cpio", "rootfs.raw"}


def test_image_digest_missing_file(tmp_path: Path) -> None:
    a = make_image(tmp_path / "a")
    os.unlink(a / "initrd.cpio")
    with pytest.raises(FileNotFoundError):
        image_digest(a)

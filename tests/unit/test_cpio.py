"""images/cpio.py: the newc archive the kernel unpacks as initramfs."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmkit.images.cpio import write_cpio


@dataclass
class Entry:
    name: str
    mode: int
    uid: int
    gid: int
    nlink: int
    data: bytes
    header_at: int
    data_at: int


def parse_newc(blob: bytes) -> list[Entry]:
    """A minimal newc reader that is strict about magic, alignment and the trailer."""
    entries, pos = [], 0
    while True:
        assert pos % 4 == 0, f"header at {pos} is not 4-byte aligned"
        assert blob[pos:pos + 6] == b"070701", f"bad magic at {pos}: {blob[pos:pos + 6]!r}"
        fields = [int(blob[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        _ino, mode, uid, gid, nlink, _mtime, size, *_dev, namesize, check = fields
        assert check == 0
        name_at = pos + 110
        raw_name = blob[name_at: name_at + namesize]
        assert raw_name.endswith(b"\0") and b"\0" not in raw_name[:-1]
        name = raw_name[:-1].decode()
        data_at = name_at + namesize
        data_at += -data_at % 4
        data = blob[data_at: data_at + size]
        assert len(data) == size
        header_at, pos = pos, data_at + size
        if name == "TRAILER!!!":
            assert size == 0
            return entries
        pos += -pos % 4
        entries.append(Entry(name, mode, uid, gid, nlink, data, header_at, data_at))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "etc" / "deep").mkdir(parents=True)
    (root / "init").write_bytes(b"#!/bin/sh\necho hi\n")  # 18 bytes: needs padding
    (root / "init").chmod(0o755)
    (root / "etc" / "hostname").write_text("vm\n")
    (root / "etc" / "hostname").chmod(0o644)
    (root / "etc" / "deep" / "empty").write_bytes(b"")
    (root / "etc" / "deep" / "empty").chmod(0o600)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "bin" / "busybox").write_bytes(bytes(range(256)) * 3 + b"x")
    (root / "bin" / "busybox").chmod(0o755)
    (root / "lib").symlink_to("etc/deep")  # a symlink to a directory: stored, not followed
    return root


def archive(root: Path) -> bytes:
    out = io.BytesIO()
    write_cpio(root, out)
    return out.getvalue()


def test_entries(tree: Path) -> None:
    entries = {e.name: e for e in parse_newc(archive(tree))}
    assert set(entries) == {"bin", "etc", "init", "lib", "bin/busybox", "bin/sh",
                            "etc/deep", "etc/hostname", "etc/deep/empty"}

    assert entries["init"].mode == stat.S_IFREG | 0o755
    assert entries["init"].data == b"#!/bin/sh\necho hi\n"
    assert entries["etc/hostname"].mode == stat.S_IFREG | 0o644
    assert entries["etc/hostname"].data == b"vm\n"
    assert entries["etc/deep/empty"].mode == stat.S_IFREG | 0o600
    assert entries["etc/deep/empty"].data == b""
    assert entries["bin/busybox"].data == (tree / "bin/busybox").read_bytes()

    assert stat.S_ISDIR(entries["etc"].mode)
    assert stat.S_IMODE(entries["etc"].mode) == stat.S_IMODE((tree / "etc").stat().st_mode)
    assert entries["etc"].nlink == 2 and entries["init"].nlink == 1

    assert stat.S_ISLNK(entries["bin/sh"].mode)
    assert entries["bin/sh"].data == b"busybox"
    assert stat.S_ISLNK(entries["lib"].mode)
    assert entries["lib"].data == b"etc/deep"
    assert not any(n.startswith("lib/") for n in entries)


def test_owned_by_root(tree: Path) -> None:
    for e in parse_newc(archive(tree)):
        assert (e.uid, e.gid) == (0, 0), e.name


def test_parents_come_before_children(tree: Path) -> None:
    names = [e.name for e in parse_newc(archive(tree))]
    for i, name in enumerate(names):
        if "/" in name:
            assert name.rsplit("/", 1)[0] in names[:i], name


def test_deterministic(tree: Path) -> None:
    assert archive(tree) == archive(tree)


def test_alignment_and_trailer(tree: Path) -> None:
    blob = archive(tree)
    entries = parse_newc(blob)  # asserts each header is aligned
    assert all(e.data_at % 4 == 0 for e in entries)
    assert len(blob) % 4 == 0
    trailer_at = blob.rindex(b"070701")
    assert blob[trailer_at + 110: trailer_at + 121] == b"TRAILER!!!\0"
    assert blob[trailer_at + 121:] == b"\0" * (len(blob) - trailer_at - 121)


def test_empty_tree(tmp_path: Path) -> None:
    blob = archive(tmp_path)
    assert parse_newc(blob) == []
    assert blob.startswith(b"070701") and b"TRAILER!!!\0" in blob


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs the cpio binary")
def test_gnu_cpio_extracts_it(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], cwd=out,
                   input=archive(tree), check=True, capture_output=True, timeout=10)
    assert (out / "init").read_bytes() == (tree / "init").read_bytes()
    assert stat.S_IMODE((out / "init").stat().st_mode) == 0o755
    assert (out / "etc/hostname").read_text() == "vm\n"
    assert (out / "etc/deep/empty").read_bytes() == b""
    assert (out / "bin/busybox").read_bytes() == (tree / "bin/busybox").read_bytes()
    assert os.readlink(out / "bin/sh") == "busybox"
    assert os.readlink(out / "lib") == "etc/deep"

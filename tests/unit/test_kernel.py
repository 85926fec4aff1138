"""images/kernel.py: pulling the LZ4-compressed vmlinux out of a bzImage."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from vmkit.errors import ImageError
from vmkit.images.kernel import extract_vmlinux

needs_lz4 = pytest.mark.skipif(shutil.which("lz4") is None, reason="needs the lz4 CLI")

FAKE_ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + bytes(range(256)) * 64 + b"vmlinux-end"


def lz4_legacy(data: bytes) -> bytes:
    return subprocess.run(["lz4", "-l", "-c"], input=data, capture_output=True, check=True,
                          timeout=10).stdout


def fake_bzimage(payload: bytes, setup_sects: int = 4, payload_offset: int = 0x3C0) -> bytes:
    """A bzImage just real enough: boot header, setup sectors, then the compressed payload
    at payload_offset into the protected-mode part, followed by the 4-byte size the kernel
    build appends."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", setup, 0x248, payload_offset, len(payload))
    protected = bytearray(payload_offset) + payload + struct.pack("<I", len(FAKE_ELF))
    return bytes(setup) + bytes(protected)


@needs_lz4
@pytest.mark.parametrize("setup_sects", [4, 27])
def test_round_trip(tmp_path: Path, setup_sects: int) -> None:
    payload = lz4_legacy(FAKE_ELF)
    assert payload[:4] == b"\x02\x21\x4c\x18"  # legacy frame, as the kernel uses
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(fake_bzimage(payload, setup_sects))
    out = tmp_path / "vmlinux"
    extract_vmlinux(bz, out)
    assert out.read_bytes() == FAKE_ELF


@needs_lz4
def test_zero_setup_sects_means_four(tmp_path: Path) -> None:
    payload = lz4_legacy(FAKE_ELF)
    image = bytearray(fake_bzimage(payload, setup_sects=4))
    image[0x1F1] = 0  # old boot protocol: 0 means 4
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(bytes(image))
    extract_vmlinux(bz, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == FAKE_ELF


@pytest.mark.parametrize("content", [b"", b"not a kernel", FAKE_ELF, b"\0" * 4096])
def test_not_a_bzimage(tmp_path: Path, content: bytes) -> None:
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(content)
    out = tmp_path / "vmlinux"
    with pytest.raises(ImageError, match="is not a Linux bzImage"):
        extract_vmlinux(bz, out)
    assert not out.exists()


def test_payload_not_lz4(tmp_path: Path) -> None:
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(fake_bzimage(b"\x1f\x8b\x08\x00" + b"gzip-ish" * 10))
    with pytest.raises(ImageError, match="not LZ4-compressed"):
        extract_vmlinux(bz, tmp_path / "vmlinux")
    assert not (tmp_path / "vmlinux").exists()


@needs_lz4
def test_payload_not_an_elf(tmp_path: Path) -> None:
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(fake_bzimage(lz4_legacy(b"MZ this is not an ELF file" * 20)))
    with pytest.raises(ImageError, match="could not decompress"):
        extract_vmlinux(bz, tmp_path / "vmlinux")
    assert not (tmp_path / "vmlinux").exists()


def test_truncated_header(tmp_path: Path) -> None:
    image = bytearray(0x210)
    image[0x202:0x206] = b"HdrS"
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(bytes(image))
    with pytest.raises(ImageError):
        extract_vmlinux(bz, tmp_path / "vmlinux")

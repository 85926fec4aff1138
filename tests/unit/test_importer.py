"""images/importer.py: inspecting a user's disk or ISO file and bringing it into the store.

These run the real qemu-img (fast, on images of a few MiB) and build ISOs with pycdlib and
grub-mkrescue; the tests that need a missing tool skip.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vmkit.errors import ImageError, InvalidInputError
from vmkit.images import importer
from vmkit.images.importer import Inspected, bring_in, inspect

from ..isos import has_bios, has_efi, make_marker_iso, make_plain_iso

MiB = 1 << 20
SIZE = 8 * MiB

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=True)


def img_info(path: Path) -> dict[str, object]:
    return json.loads(qemu_img("info", "--output=json", str(path)).stdout)


def same_content(a: Path, b: Path) -> bool:
    """qemu-img compare: the guest would see the same bytes (whatever the formats)."""
    return subprocess.run(["qemu-img", "compare", str(a), str(b)], capture_output=True,
                          check=False).returncode == 0


def write_mbr(path: Path, size: int = SIZE) -> Path:
    """A raw disk with one Linux partition in an MBR, and some data in that partition."""
    with open(path, "wb") as f:
        f.truncate(size)
        entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048,
                            size // 512 - 2048)
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")
        f.seek(2048 * 512)
        f.write(b"partition data " * 1000)
    return path


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, message: str) -> None:
        self.calls.append((fraction, message))

    def check(self) -> None:
        fractions = [f for f, _ in self.calls]
        assert fractions, "no progress was reported"
        assert all(0.0 <= f <= 1.0 for f in fractions)
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0
        assert all(isinstance(m, str) and m for _, m in self.calls)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Raw disks (one with an MBR, one a whole-disk ext4) and each converted to qcow2, vmdk
    and vdi, made once for the module."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("needs mkfs.ext4 (e2fsprogs)")
    d = tmp_path_factory.mktemp("sources")
    made = {"mbr.raw": write_mbr(d / "mbr.raw")}
    ext4 = d / "ext4.raw"
    with open(ext4, "wb") as f:
        f.truncate(SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "vmkit-test", str(ext4)], check=True,
                   capture_output=True)
    made["ext4.raw"] = ext4
    for base in ("mbr", "ext4"):
        for fmt in ("qcow2", "vmdk", "vdi"):
            out = d / f"{base}.{fmt}"
            qemu_img("convert", "-f", "raw", "-O", fmt, str(d / f"{base}.raw"), str(out))
            made[out.name] = out
    return made


# --- disks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("base, layout", [("mbr", "mbr"), ("ext4", "unknown")])
def test_raw_disk_is_inspected_and_copied(sources: dict[str, Path], tmp_path: Path,
                                          base: str, layout: str) -> None:
    src = sources[f"{base}.raw"]
    info = inspect(src)
    assert info == Inspected("disk", "raw", SIZE, layout)
    progress = Recorder()
    assert bring_in(src, tmp_path, info, progress) == "disk.raw"
    assert os.listdir(tmp_path) == ["disk.raw"]
    assert (tmp_path / "disk.raw").read_bytes() == src.read_bytes()
    progress.check()


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vdi"])
@pytest.mark.parametrize("base, layout", [("mbr", "mbr"), ("ext4", "unknown")])
def test_image_is_inspected_and_brought_in_as_qcow2(sources: dict[str, Path], tmp_path: Path,
                                                    fmt: str, base: str, layout: str) -> None:
    src = sources[f"{base}.{fmt}"]
    info = inspect(src)
    assert info == Inspected("disk", fmt, SIZE, layout)
    progress = Recorder()
    assert bring_in(src, tmp_path, info, progress) == "disk.qcow2"
    assert os.listdir(tmp_path) == ["disk.qcow2"]
    out = tmp_path / "disk.qcow2"
    assert img_info(out)["format"] == "qcow2"
    assert img_info(out)["virtual-size"] == SIZE
    assert same_content(sources[f"{base}.raw"], out)
    if fmt == "qcow2":  # copied, not converted
        assert out.read_bytes() == src.read_bytes()
    else:
        assert any("convert" in m for _, m in progress.calls)
    progress.check()


def test_gpt_disk(tmp_path: Path) -> None:
    src = write_mbr(tmp_path / "gpt.raw")  # the protective MBR ...
    with open(src, "r+b") as f:
        f.seek(512)
        f.write(b"EFI PART")  # ... and the GPT header's signature
    assert inspect(src).bootable == "gpt"


def test_qcow2_of_an_unrecognised_disk_is_taken_as_unknown(tmp_path: Path) -> None:
    """A qcow2 header is proof enough of a disk image: a blank one is fine (to install on)."""
    src = tmp_path / "blank.qcow2"
    qemu_img("create", "-f", "qcow2", str(src), "64M")
    assert inspect(src) == Inspected("disk", "qcow2", 64 * MiB, "unknown")


@pytest.mark.parametrize("in_kernel", [True, False])
def test_sparse_raw_stays_sparse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 in_kernel: bool) -> None:
    src = write_mbr(tmp_path / "sparse.raw", 1 << 30)
    with open(src, "r+b") as f:
        f.seek(700 * MiB)
        f.write(os.urandom(MiB))
        f.seek((1 << 30) - 4096)
        f.write(b"the end" * 100)
    if os.stat(src).st_blocks * 512 > 16 * MiB:
        pytest.skip("this filesystem does not keep files sparse")
    if not in_kernel:  # as on a kernel or filesystem pair without copy_file_range
        def no_copy_file_range(*args: object) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", no_copy_file_range)
    dest = tmp_path / "store"
    dest.mkdir()
    progress = Recorder()
    info = inspect(src)
    assert info == Inspected("disk", "raw", 1 << 30, "mbr")
    assert bring_in(src, dest, info, progress) == "disk.raw"
    out = dest / "disk.raw"
    assert out.stat().st_size == 1 << 30
    assert out.stat().st_blocks * 512 < 16 * MiB
    with open(src, "rb") as a, open(out, "rb") as b:
        for offset in (0, 2048 * 512, 700 * MiB, (1 << 30) - 4096):
            a.seek(offset)
            b.seek(offset)
            assert a.read(MiB) == b.read(MiB)
    assert same_content(src, out)
    progress.check()


def test_flat_vmdk_next_to_its_descriptor_is_converted(sources: dict[str, Path],
                                                       tmp_path: Path) -> None:
    src = tmp_path / "flat.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat",
             str(sources["mbr.raw"]), str(src))
    assert (tmp_path / "flat-flat.vmdk").exists()
    info = inspect(src)
    assert info == Inspected("disk", "vmdk", SIZE, "mbr")
    dest = tmp_path / "store"
    dest.mkdir()
    assert bring_in(src, dest, info, Recorder()) == "disk.qcow2"
    assert same_content(sources["mbr.raw"], dest / "disk.qcow2")


def test_vmdk_whose_extent_is_elsewhere_is_refused(sources: dict[str, Path],
                                                   tmp_path: Path) -> None:
    """A VMDK descriptor can name any file as its data: /etc/shadow, /dev/sda. Refused."""
    secret = tmp_path / "elsewhere" / "secret.bin"
    secret.parent.mkdir()
    shutil.copy(sources["mbr.raw"], secret)
    src = tmp_path / "disk.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat",
             str(sources["mbr.raw"]), str(src))
    text = src.read_text().replace('"disk-flat.vmdk"', f'"{secret}"')
    src.write_text(text)
    with pytest.raises(ImageError, match="VMDK descriptor whose data"):
        inspect(src)


# --- disks refused -------------------------------------------------------------------------

def _l1_table(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(48)
    assert header[:4] == b"QFI\xfb"
    return int(struct.unpack(">Q", header[40:48])[0])


def _qcow2_with_data(sources: dict[str, Path], path: Path) -> Path:
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(sources["mbr.raw"]), str(path))
    return path


def test_qcow2_with_a_broken_l1_table_is_refused(sources: dict[str, Path],
                                                 tmp_path: Path) -> None:
    src = _qcow2_with_data(sources, tmp_path / "broken.qcow2")
    with open(src, "r+b") as f:  # point the first L2 table at the L1 table's own cluster
        f.seek(_l1_table(src))
        f.write(struct.pack(">Q", (1 << 63) | _l1_table(src)))
    with pytest.raises(ImageError, match=r"corrupt qcow2 image.*qemu-img check -r all"):
        inspect(src)


def test_truncated_qcow2_is_refused(sources: dict[str, Path], tmp_path: Path) -> None:
    src = _qcow2_with_data(sources, tmp_path / "truncated.qcow2")
    with open(src, "r+b") as f:
        f.truncate(src.stat().st_size // 2)
    with pytest.raises(ImageError, match="corrupt"):
        inspect(src)


def test_qcow2_with_a_garbled_header_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "garbled.qcow2"
    qemu_img("create", "-f", "qcow2", str(src), "8M")
    with open(src, "r+b") as f:
        f.seek(4)
        f.write(struct.pack(">I", 99))  # version 99
    with pytest.raises(ImageError, match="corrupt or not a disk image: .*version"):
        inspect(src)


def test_qcow2_with_leaked_clusters_only_is_taken(sources: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """Leaks waste space but lose nothing (qemu-img check exits 3): not a reason to refuse."""
    src = _qcow2_with_data(sources, tmp_path / "leaky.qcow2")
    with open(src, "r+b") as f:  # forget the first data cluster: still allocated, now unused
        f.seek(_l1_table(src))
        l2 = struct.unpack(">Q", f.read(8))[0] & ((1 << 56) - 512)
        f.seek(l2)
        f.write(bytes(8))
    check = subprocess.run(["qemu-img", "check", str(src)], capture_output=True, check=False)
    assert check.returncode == 3, check.stdout
    assert inspect(src) == Inspected("disk", "qcow2", SIZE, "unknown")  # sector 0 is gone


@pytest.mark.parametrize("keep", [lambda n: n - 4096, lambda n: n // 2], ids=["4k", "half"])
@pytest.mark.parametrize("fmt", ["qcow2", "vdi", "vmdk"])
def test_truncated_images_are_refused(sources: dict[str, Path], tmp_path: Path,
                                      fmt: str, keep: Callable[[int], int]) -> None:
    """qemu-img check misses a last cluster cut in half, and a VDI's missing blocks: QEMU
    would read what is lost as zeros."""
    src = tmp_path / f"truncated.{fmt}"
    shutil.copy(sources[f"mbr.{fmt}"], src)
    with open(src, "r+b") as f:
        f.truncate(keep(src.stat().st_size))
    with pytest.raises(ImageError, match=rf"(truncated|corrupt) {fmt} image"):
        inspect(src)


def test_truncated_flat_vmdk_extent_is_refused(sources: dict[str, Path],
                                               tmp_path: Path) -> None:
    src = tmp_path / "flat.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat",
             str(sources["mbr.raw"]), str(src))
    with open(tmp_path / "flat-flat.vmdk", "r+b") as f:
        f.truncate(SIZE // 2)
    with pytest.raises(ImageError, match=r"truncated vmdk image \(flat-flat.vmdk\)"):
        inspect(src)


def test_qcow2_with_a_backing_file_is_refused(sources: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(sources["mbr.qcow2"]), "-F", "qcow2", str(src))
    with pytest.raises(ImageError, match=r"has a backing file .*qemu-img convert -O qcow2"):
        inspect(src)


def test_encrypted_qcow2_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "secret.qcow2"
    for attempt in range(5):  # LUKS times its key derivation, which fails on a busy machine:
        made = subprocess.run(  # "Unable to get accurate CPU usage"; not what is tested here
            ["qemu-img", "create", "-f", "qcow2", "--object", "secret,id=s0,data=password",
             "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
             str(src), "8M"], capture_output=True, text=True, check=False)
        if made.returncode == 0 or "accurate CPU usage" not in made.stderr:
            break
    assert made.returncode == 0, made.stderr
    with pytest.raises(ImageError, match="encrypted"):
        inspect(src)


@pytest.mark.parametrize("fmt", ["vhdx", "vpc", "parallels"])
def test_other_formats_are_refused_as_unsupported(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / f"disk.{fmt}"
    qemu_img("create", "-f", fmt, str(src), "8M")
    with pytest.raises(ImageError, match=rf"unsupported format {fmt}; .*qemu-img convert -O "
                                         "qcow2"):
        inspect(src)


def test_text_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("not a disk\n" * 1000)
    with pytest.raises(ImageError, match=r"does not look like a disk image \(no partition "
                                         r"table, no filesystem\)"):
        inspect(src)


def test_zeros_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "zeros.img"
    with open(src, "wb") as f:
        f.truncate(SIZE)
    with pytest.raises(ImageError, match="does not look like a disk image"):
        inspect(src)


def test_compressed_disk_is_refused_with_a_hint(sources: dict[str, Path],
                                                tmp_path: Path) -> None:
    src = tmp_path / "disk.raw.gz"
    src.write_bytes(gzip.compress(sources["mbr.raw"].read_bytes()))
    with pytest.raises(ImageError, match=r"gzip-compressed; decompress it first"):
        inspect(src)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "empty.img"
    src.touch()
    with pytest.raises(ImageError, match="empty"):
        inspect(src)


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        inspect(tmp_path / "nope.qcow2")
    with pytest.raises(InvalidInputError, match="is a directory"):
        inspect(tmp_path)


def test_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file or a block device"):
        inspect(fifo)


# --- bring_in's failures -------------------------------------------------------------------

def test_failed_conversion_leaves_nothing(sources: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "disk.vdi"
    shutil.copy(sources["mbr.vdi"], src)
    info = inspect(src)
    with open(src, "r+b") as f:  # it breaks between inspect and bring_in
        f.truncate(100)
    dest = tmp_path / "store"
    dest.mkdir()
    with pytest.raises(ImageError, match="qemu-img could not convert"):
        bring_in(src, dest, info, Recorder())
    assert os.listdir(dest) == []


def test_failed_copy_leaves_nothing(sources: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object) -> int:
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(importer, "_copy_range", full)
    dest = tmp_path / "store"
    dest.mkdir()
    with pytest.raises(ImageError, match="Input/output error"):
        bring_in(sources["mbr.raw"], dest, inspect(sources["mbr.raw"]), Recorder())
    assert os.listdir(dest) == []


def test_bring_in_does_not_overwrite(sources: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "disk.raw").write_text("mine")
    with pytest.raises(ImageError, match="not an empty directory"):
        bring_in(sources["mbr.raw"], tmp_path, inspect(sources["mbr.raw"]), Recorder())
    assert (tmp_path / "disk.raw").read_text() == "mine"


def test_convert_progress_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """qemu-img convert -p writes '    (NN.NN/100%)\\r' to stdout; split across reads too."""
    script = tmp_path / "qemu-img"
    script.write_text("#!/bin/sh\n"
                      "printf '    (0.00/100%%)\\r    (12.5'; sleep 0.1\n"
                      "printf '0/100%%)\\r    (50.00/100%%)\\r    (100.00/100%%)\\r\\n'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    progress = Recorder()
    importer._convert(tmp_path / "in.vdi", "vdi", tmp_path / "out.qcow2", progress)
    assert [f for f, _ in progress.calls] == [0.0, 0.125, 0.5, 1.0]


# --- ISOs ----------------------------------------------------------------------------------

def _eltorito_iso(path: Path, platforms: list[int]) -> Path:
    """An ISO with one boot entry per platform id (pycdlib puts the first in the default
    entry and makes each further one a section, of platform 0xEF when efi=True)."""
    pycdlib = pytest.importorskip("pycdlib")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3)
    for i, platform in enumerate(platforms):
        image = b"\xeb\xfe" + bytes(2046)
        iso.add_fp(io.BytesIO(image), len(image), f"/BOOT{i}.IMG;1")
        iso.add_eltorito(f"/BOOT{i}.IMG;1", bootcatfile="/BOOT.CAT;1", platform_id=platform,
                         efi=platform == 0xEF)
    iso.write(str(path))
    iso.close()
    return path


def test_plain_iso_is_refused_as_not_bootable(tmp_path: Path) -> None:
    pytest.importorskip("pycdlib")
    src = make_plain_iso(tmp_path / "plain.iso")
    with pytest.raises(ImageError, match=r"is an ISO image but not bootable \(it has no El "
                                         r"Torito boot record\)"):
        inspect(src)


@pytest.mark.parametrize("platforms, bootable", [
    ([0x00], "bios"), ([0xEF], "uefi"), ([0x00, 0xEF], "bios+uefi"),
])
def test_el_torito_platforms(tmp_path: Path, platforms: list[int], bootable: str) -> None:
    src = _eltorito_iso(tmp_path / "boot.iso", platforms)
    assert inspect(src) == Inspected("iso", "raw", src.stat().st_size, bootable)


def test_iso_for_another_platform_is_refused(tmp_path: Path) -> None:
    src = _eltorito_iso(tmp_path / "ppc.iso", [0x01])  # PowerPC
    with pytest.raises(ImageError, match=r"not bootable on a PC.*0x01"):
        inspect(src)


def test_iso_with_a_damaged_boot_catalog_is_refused(tmp_path: Path) -> None:
    src = _eltorito_iso(tmp_path / "damaged.iso", [0x00])
    data = bytearray(src.read_bytes())
    record = next(s for s in range(16, 32) if data[s * 2048] == 0 and
                  data[s * 2048 + 1:s * 2048 + 6] == b"CD001")
    catalog = int.from_bytes(data[record * 2048 + 0x47:record * 2048 + 0x4B], "little")
    data[catalog * 2048 + 4] ^= 0xFF  # the validation entry's checksum no longer adds up
    src.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="damaged El Torito boot catalog"):
        inspect(src)


@pytest.mark.skipif(shutil.which("grub-mkrescue") is None or not has_bios(),
                    reason="needs grub-mkrescue with grub-pc-bin")
def test_grub_mkrescue_iso(tmp_path: Path) -> None:
    src = make_marker_iso(tmp_path / "marker.iso", "importer test")
    info = inspect(src)
    assert info.kind == "iso"
    assert info.format == "raw"
    assert info.virtual_size == src.stat().st_size
    assert "bios" in info.bootable.split("+")
    assert ("uefi" in info.bootable.split("+")) == has_efi()
    dest = tmp_path / "store"
    dest.mkdir()
    progress = Recorder()
    assert bring_in(src, dest, info, progress) == "cdrom.iso"
    assert (dest / "cdrom.iso").read_bytes() == src.read_bytes()
    progress.check()

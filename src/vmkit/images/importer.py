"""Bring a user's own disk image or ISO into the image store.

``inspect`` decides, before anything is copied, whether the file is something a VM can use:
a qcow2, raw, VMDK or VDI disk, or a bootable ISO. It refuses what would fail later in a
less clear way (a corrupt image, one that needs a backing file or a key, an ISO with no boot
record, a text file that qemu-img would happily call "raw"). ``bring_in`` then puts the file
into an image directory: qcow2, raw and ISO files as they are (raw ones kept sparse), VMDK and
VDI converted to qcow2, which QEMU runs best and snapshots on top of.

Everything is read with qemu-img or in pure Python; nothing is mounted and nothing in the
file is run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HostError, ImageError, InvalidInputError, NoSpaceError

Progress = Callable[[float, str], None]

FORMATS = ("qcow2", "raw", "vmdk", "vdi")
# qemu-img 7.2 checks qcow2, qed, vdi, vhdx, vmdk and parallels; of the formats taken here,
# raw is the one with no metadata to check (exit code 63: "does not support checks").
CHECKABLE = ("qcow2", "vdi", "vmdk")
CHECK_CORRUPT, CHECK_LEAKS, CHECK_UNSUPPORTED = 2, 3, 63

ISO_SECTOR = 2048
ISO_MAGIC_AT = 0x8001  # "CD001" in the first volume descriptor, sector 16
ELTORITO_ID = b"EL TORITO SPECIFICATION"
PLATFORMS = {0x00: "bios", 0xEF: "uefi"}  # El Torito platform ids vmkit's machines boot
MBR_MAGIC_AT, GPT_MAGIC_AT, EXT_MAGIC_AT = 510, 512, 1024 + 56
HEAD = 0x8000 + ISO_SECTOR  # enough of the start of a file to recognise it

CHUNK = 64 << 20  # bytes copied between progress reports
ZERO_BLOCK_SIZE = 1 << 20
_ZEROS = bytes(ZERO_BLOCK_SIZE)
_PROGRESS_RE = re.compile(rb"\(\s*([0-9]+(?:\.[0-9]+)?)/100%\)")

# Files that qemu-img calls "raw" because it reads any file as raw, with what to do instead.
_NOT_DISKS = (
    (0, b"\x1f\x8b", "gzip-compressed; decompress it first (gunzip)"),
    (0, b"\xfd7zXZ\x00", "xz-compressed; decompress it first (xz -d)"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it first (zstd -d)"),
    (0, b"BZh", "bzip2-compressed; decompress it first (bunzip2)"),
    (0, b"PK\x03\x04", "a zip archive; extract the disk image from it first"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; extract the disk image from it first"),
    (257, b"ustar", "a tar archive (an OVA appliance?); extract the disk image from it first"),
    (0, b"QFI\xfb", "a qcow2 image that qemu-img cannot open: it is truncated or damaged"),
    (0, b"KDMV", "a VMDK image that qemu-img cannot open: it is truncated or damaged"),
    (0x40, b"\x7f\x10\xda\xbe", "a VDI image that qemu-img cannot open: it is truncated or "
                                "damaged"),
)


@dataclass(frozen=True)
class Inspected:
    kind: str          # "disk" or "iso"
    format: str        # qemu-img's format name: qcow2, raw, vmdk, vdi (an ISO is "raw")
    virtual_size: int  # bytes the guest sees
    bootable: str      # iso: "bios", "uefi" or "bios+uefi"; disk: "mbr", "gpt" or "unknown"


def inspect(path: Path) -> Inspected:
    """What ``path`` is, refused unless a VM could use it as a disk or boot it as a CD-ROM.

    Raises InvalidInputError when there is no readable file, ImageError when the file is not
    a usable image (with what to do about it)."""
    size = _open_check(path)
    real = Path(os.path.realpath(path))
    info = _qemu_img_info(path, real)
    fmt = str(info.get("format", ""))
    if fmt not in FORMATS:
        raise ImageError(_unsupported(path, fmt))
    _refuse_dependencies(path, real, fmt, info)
    virtual_size = int(info.get("virtual-size") or size)
    if fmt == "raw":
        head = _read_at(real, 0, HEAD)
        if head[ISO_MAGIC_AT:ISO_MAGIC_AT + 5] == b"CD001":
            return Inspected("iso", fmt, virtual_size, _iso_bootable(path, real))
        bootable = _disk_layout(head)
        if bootable is None:
            raise ImageError(_not_a_disk(path, head))
        return Inspected("disk", fmt, virtual_size, bootable)
    if fmt in CHECKABLE:
        _check(path, real, fmt)
        _check_length(path, real, fmt, info)
    head = _guest_head(real, fmt, min(virtual_size, 4 * ISO_SECTOR))
    return Inspected("disk", fmt, virtual_size, _disk_layout(head) or "unknown")


def bring_in(src: Path, dest_dir: Path, info: Inspected, progress: Progress) -> str:
    """Put ``src`` (as ``inspect`` described it) into the empty directory ``dest_dir`` and
    return the file name it got: cdrom.iso, disk.qcow2 or disk.raw.

    qcow2, raw and ISO files are copied byte for byte, holes staying holes (a 20 GiB sparse
    raw disk takes no more room than its data); VMDK and VDI are converted to qcow2, the
    format vmkit layers its snapshots on. A failure leaves nothing behind in ``dest_dir``."""
    if info.kind == "iso":
        name = "cdrom.iso"
    elif info.format == "raw":
        name = "disk.raw"
    elif info.format in FORMATS:
        name = "disk.qcow2"
    else:
        raise ImageError(_unsupported(src, info.format))
    dest = dest_dir / name
    if not dest_dir.is_dir() or os.path.lexists(dest):
        raise ImageError(f"cannot bring {src} in: {dest_dir} is not an empty directory")
    real = Path(os.path.realpath(src))
    try:
        if info.format in ("vmdk", "vdi"):
            _convert(real, info.format, dest, progress)
        else:
            _copy(real, dest, progress)
    except BaseException as e:
        dest.unlink(missing_ok=True)
        if isinstance(e, OSError):
            if e.errno == errno.ENOSPC:
                raise NoSpaceError(f"no room for {src.name} in {dest_dir}: the disk is full "
                                   f"(it needs up to {_mib(info.virtual_size)}); free some "
                                   "space and import it again") from None
            raise ImageError(f"could not bring {src} into {dest_dir}: {e.strerror or e}") from None
        raise
    progress(1.0, f"{name} ready")
    return name


# --- inspect's steps ------------------------------------------------------------------------

def _open_check(path: Path) -> int:
    """The file's size; refuses paths that are not a readable, non-empty file or block
    device (a device is how a physical disk or CD drive is imported)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidInputError(f"{path} does not exist; check the path") from None
    except PermissionError:
        raise InvalidInputError(f"cannot read {path}: permission denied on a directory on the "
                                "way to it") from None
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(f"{path} is a directory; give the disk image or ISO file "
                                "inside it")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidInputError(f"{path} is not a regular file or a block device; give a disk "
                                "image or ISO file")
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(0)
            f.read(1)
    except PermissionError:
        raise InvalidInputError(f"cannot read {path}: permission denied; make it readable "
                                "(chmod a+r) or import it as its owner") from None
    except OSError as e:
        raise InvalidInputError(f"cannot read {path}: {e.strerror}") from None
    if size == 0:
        what = "device has no medium in it" if stat.S_ISBLK(st.st_mode) else "file is empty"
        raise ImageError(f"{path} is not a disk image: the {what} (0 bytes)")
    return size


def _run_qemu_img(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["qemu-img", *argv], capture_output=True, text=True,
                              errors="replace", stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise HostError("qemu-img is not installed; install it (Debian/Ubuntu: "
                        "apt-get install qemu-utils)") from None


def _reason(stderr: str) -> str:
    """qemu-img's last error line, without its 'qemu-img: ' prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    return lines[-1].removeprefix("qemu-img: ")


def _qemu_img_info(path: Path, real: Path) -> dict[str, Any]:
    """-U: the image may be open in a VM; this only reads its headers."""
    result = _run_qemu_img(["info", "--output=json", "-U", str(real)])
    if result.returncode != 0:
        raise ImageError(f"{path} is corrupt or not a disk image: {_reason(result.stderr)}")
    try:
        info = json.loads(result.stdout)
    except ValueError:
        raise ImageError(f"{path}: qemu-img info gave output vmkit cannot read") from None
    if not isinstance(info, dict):
        raise ImageError(f"{path}: qemu-img info gave output vmkit cannot read")
    return info


def _unsupported(path: Path, fmt: str) -> str:
    what = "an encrypted (LUKS) volume" if fmt == "luks" else f"a {fmt or 'unknown'} image"
    return (f"{path} is {what}: unsupported format {fmt or 'unknown'}; vmkit imports qcow2, "
            f"raw, vmdk, vdi and ISO files; convert it with "
            f"qemu-img convert -O qcow2 {path} {path.with_suffix('.qcow2').name} "
            "and import that")


def _refuse_dependencies(path: Path, real: Path, fmt: str, info: dict[str, Any]) -> None:
    """Refuse images that are not whole in this one file (a backing file, an external data
    file, VMDK extents elsewhere: they would be left behind, or worse, name any file on this
    host), encrypted ones (vmkit has no key to give QEMU) and ones marked corrupt."""
    data = (info.get("format-specific") or {}).get("data") or {}
    flatten = f"flatten it with qemu-img convert -O qcow2 {path} new.qcow2 and import new.qcow2"
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    if backing:
        raise ImageError(f"{path} has a backing file ({backing}): it holds only the changes "
                         f"on top of that file; {flatten}")
    if data.get("data-file"):
        raise ImageError(f"{path} keeps its data in an external file ({data['data-file']}); "
                         f"{flatten}")
    if info.get("encrypted") or data.get("encrypt"):
        raise ImageError(f"{path} is encrypted; vmkit cannot give QEMU its key. Decrypt it "
                         f"with qemu-img convert --object secret,id=sec0,file=KEYFILE "
                         f"--image-opts driver={fmt},file.filename={path},"
                         "encrypt.key-secret=sec0 -O qcow2 new.qcow2 and import new.qcow2")
    if data.get("corrupt"):
        raise ImageError(f"{path} is marked corrupt (QEMU found an inconsistency while "
                         f"using it); repair a copy with qemu-img check -r all COPY or use an "
                         "intact one")
    for extent in data.get("extents") or []:
        name = extent.get("filename") if isinstance(extent, dict) else None
        if not name or Path(name) == real:
            continue
        where = Path(os.path.realpath(real.parent / name))
        if where.parent != real.parent or not where.is_file():
            raise ImageError(f"{path} is a VMDK descriptor whose data ({name}) is not a file "
                             f"next to it; put the descriptor and its extents in one directory "
                             f"or {flatten}")


def _check(path: Path, real: Path, fmt: str) -> None:
    """qemu-img check: refuse a corrupt image before a VM trusts it (a guest writing to one
    can lose data or crash QEMU). Leaked clusters only waste space: they are fine."""
    result = _run_qemu_img(["check", "--output=json", "-U", "-f", fmt, str(real)])
    if result.returncode in (0, CHECK_LEAKS, CHECK_UNSUPPORTED):
        return
    repair = f"use an intact copy of {path} (download or copy it again)"
    if fmt == "qcow2":
        repair = ("repair a copy with qemu-img check -r all COPY (what is damaged may be "
                  f"lost) or use an intact copy of {path}")
    if result.returncode == CHECK_CORRUPT:
        try:
            count = int(json.loads(result.stdout).get("corruptions", 0))
        except (ValueError, TypeError, AttributeError):
            count = 0
        found = f"{count} errors" if count else "errors"
        raise ImageError(f"{path} is a corrupt {fmt} image (qemu-img check found {found}); "
                         f"{repair}")
    lines = [line.strip() for line in result.stderr.splitlines() if line.startswith("ERROR")]
    reason = lines[0].removeprefix("ERROR").strip(" :") if lines else _reason(result.stderr)
    raise ImageError(f"{path} is a corrupt {fmt} image: qemu-img check could not finish "
                     f"({reason}); {repair}")


def _check_length(path: Path, real: Path, fmt: str, info: dict[str, Any]) -> None:
    """Refuse an image cut short (an interrupted download or copy). qemu-img check misses
    a last cluster that is only partly there, and a VDI with whole blocks missing; QEMU then
    reads what is missing as zeros. The file must reach the end of the last data that its
    own metadata (qemu-img map) places in it."""
    data = (info.get("format-specific") or {}).get("data") or {}
    extents = [e for e in data.get("extents") or [] if isinstance(e, dict)]
    if any(e.get("filename") and Path(e["filename"]) != real for e in extents):
        # A VMDK descriptor: map's offsets are in its extent files. Flat ones must be whole.
        for extent in extents:
            if str(extent.get("format", "")).upper() != "FLAT":
                continue
            name = Path(os.path.realpath(real.parent / extent["filename"]))
            need, have = int(extent.get("virtual-size") or 0), name.stat().st_size
            if have < need:
                raise ImageError(_truncated(path, fmt, have, need, f" ({name.name})"))
        return
    result = _run_qemu_img(["map", "--output=json", "-U", "-f", fmt, str(real)])
    if result.returncode != 0:
        raise ImageError(f"{path} is a corrupt {fmt} image: qemu-img cannot map its data "
                         f"({_reason(result.stderr)}); use an intact copy")
    try:
        runs = json.loads(result.stdout)
        need = max((int(r["offset"]) + int(r["length"]) for r in runs
                    if r.get("data") and "offset" in r), default=0)
    except (ValueError, TypeError, KeyError):
        return  # not what qemu-img 7.2 prints; qemu-img check has had its say
    have = os.stat(real).st_size
    if have < need:
        raise ImageError(_truncated(path, fmt, have, need))


def _truncated(path: Path, fmt: str, have: int, need: int, where: str = "") -> str:
    return (f"{path} is a truncated {fmt} image{where}: it has {have} bytes of the {need} "
            "its metadata refers to (an interrupted download or copy?); use an intact copy")


def _read_at(path: Path, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return os.pread(f.fileno(), size, offset)
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror}") from None


def _guest_head(real: Path, fmt: str, size: int) -> bytes:
    """The first ``size`` bytes the guest sees on a non-raw disk ('' when unreadable: then
    the layout is only "unknown", which refuses nothing)."""
    if size <= 0:
        return b""
    with tempfile.TemporaryDirectory(prefix="vmkit-import-") as tmp:
        out = Path(tmp) / "head"
        result = _run_qemu_img(["dd", "-U", "-f", fmt, "-O", "raw", f"bs={size}", "count=1",
                                f"if={real}", f"of={out}"])
        if result.returncode != 0:
            return b""
        return out.read_bytes()


def _disk_layout(head: bytes) -> str | None:
    """'gpt', 'mbr', 'unknown' for a whole-disk ext2/3/4 filesystem, None for anything else."""
    if head[GPT_MAGIC_AT:GPT_MAGIC_AT + 8] == b"EFI PART" or head[4096:4104] == b"EFI PART":
        return "gpt"
    if head[MBR_MAGIC_AT:MBR_MAGIC_AT + 2] == b"\x55\xaa":
        return "mbr"
    if head[EXT_MAGIC_AT:EXT_MAGIC_AT + 2] == b"\x53\xef":
        return "unknown"
    return None


def _not_a_disk(path: Path, head: bytes) -> str:
    for offset, magic, what in _NOT_DISKS:
        if head[offset:offset + len(magic)] == magic:
            return f"{path} is {what}"
    return (f"{path} does not look like a disk image (no partition table, no filesystem); "
            "give a qcow2, raw, vmdk or vdi disk image or a bootable ISO")


def _iso_bootable(path: Path, real: Path) -> str:
    """'bios', 'uefi' or 'bios+uefi': the x86 platforms the ISO's El Torito boot catalog
    has a bootable entry for. Read in pure Python: an ISO is only a few fixed structures."""
    with open(real, "rb") as f:
        fd = f.fileno()
        catalog_at = None
        for sector in range(16, 16 + 64):  # the volume descriptor set, ended by type 255
            vd = os.pread(fd, ISO_SECTOR, sector * ISO_SECTOR)
            if len(vd) < ISO_SECTOR or vd[1:6] != b"CD001" or vd[0] == 255:
                break
            if vd[0] == 0 and vd[7:39].rstrip(b"\0 ") == ELTORITO_ID:
                catalog_at = int.from_bytes(vd[0x47:0x4B], "little")
                break
        if catalog_at is None:
            raise ImageError(f"{path} is an ISO image but not bootable (it has no El Torito "
                             "boot record); vmkit boots VMs from installer or live ISOs, "
                             "which have one")
        catalog = os.pread(fd, 4 * ISO_SECTOR, catalog_at * ISO_SECTOR)
    platforms = _catalog_platforms(catalog)
    if platforms is None:
        raise ImageError(f"{path} is an ISO image with a damaged El Torito boot catalog "
                         f"(sector {catalog_at}); download or build it again")
    found = [name for pid, name in PLATFORMS.items() if pid in platforms]
    if not found:
        others = ", ".join(f"0x{p:02x}" for p in sorted(platforms)) or "none"
        raise ImageError(f"{path} is an ISO image but not bootable on a PC: its boot catalog "
                         f"has no bootable BIOS or UEFI entry (platform ids: {others}); use "
                         "an x86 installer or live ISO")
    return "+".join(found)


def _catalog_platforms(cat: bytes) -> set[int] | None:
    """The platform ids with at least one bootable entry (boot indicator 0x88); None when
    the validation entry is missing or its checksum is wrong."""
    if len(cat) < 64 or cat[0] != 1 or cat[30:32] != b"\x55\xaa":
        return None
    if sum(int.from_bytes(cat[i:i + 2], "little") for i in range(0, 32, 2)) & 0xFFFF:
        return None
    platforms = {cat[1]} if cat[32] == 0x88 else set()  # the initial/default entry
    pos = 64
    while pos + 32 <= len(cat) and cat[pos] in (0x90, 0x91):  # section headers
        final, platform = cat[pos] == 0x91, cat[pos + 1]
        count = int.from_bytes(cat[pos + 2:pos + 4], "little")
        pos += 32
        for _ in range(count):
            if pos + 32 > len(cat):
                break
            if cat[pos] == 0x88:
                platforms.add(platform)
            pos += 32
            while pos + 32 <= len(cat) and cat[pos] == 0x44:  # extension entries
                more = cat[pos + 1] & 0x20
                pos += 32
                if not more:
                    break
        if final:
            break
    return platforms


# --- bring_in's steps -----------------------------------------------------------------------

def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n < 10 << 30 else f"{n / (1 << 30):.1f} GiB"


class _Reporter:
    """Calls progress at most once per whole percent, so a file of many small extents does
    not flood whoever listens."""

    def __init__(self, progress: Progress, what: str) -> None:
        self.progress, self.what, self.last = progress, what, -1

    def __call__(self, fraction: float, detail: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if int(fraction * 100) > self.last:
            self.last = int(fraction * 100)
            self.progress(fraction, f"{self.what}{detail}")


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each stretch of a regular file that holds data, holes skipped."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole from pos to the end
                return
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no hole support: all data
                yield pos, size
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def _copy(src: Path, dest: Path, progress: Progress) -> None:
    """Copy byte for byte, keeping holes: only the data extents are copied (in the kernel,
    with copy_file_range, when it can), and the size is set at the end. From a block device,
    which has no holes, blocks of zeros are skipped instead."""
    report = _Reporter(progress, f"copying {dest.name}")
    report(0.0)
    with open(src, "rb") as fin:
        fd_in = fin.fileno()
        size = os.lseek(fd_in, 0, os.SEEK_END)
        is_device = stat.S_ISBLK(os.fstat(fd_in).st_mode)
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            in_kernel = not is_device
            extents = [(0, size)] if is_device else _data_extents(fd_in, size)
            for start, end in extents:
                pos = start
                while pos < end:
                    n = min(CHUNK, end - pos)
                    done = 0
                    if in_kernel:
                        try:
                            done = _copy_range(fd_in, fd_out, pos, n)
                        except OSError as e:
                            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                                               errno.EOPNOTSUPP, errno.EBADF):
                                raise
                            in_kernel = False
                    if not in_kernel:
                        done = _copy_blocks(fd_in, fd_out, pos, n)
                    if done == 0:
                        raise ImageError(f"{src} got shorter while it was being copied; make "
                                         "sure nothing writes to it and import it again")
                    pos += done
                    report(pos / size, f": {_mib(pos)} of {_mib(size)}")
            os.ftruncate(fd_out, size)
            os.fsync(fd_out)
        finally:
            os.close(fd_out)


def _copy_range(fd_in: int, fd_out: int, pos: int, n: int) -> int:
    done = 0
    while done < n:
        k = os.copy_file_range(fd_in, fd_out, n - done, pos + done, pos + done)
        if k == 0:
            break
        done += k
    return done


def _copy_blocks(fd_in: int, fd_out: int, pos: int, n: int) -> int:
    """Copy with pread/pwrite, leaving blocks of zeros unwritten (holes in ``fd_out``)."""
    done = 0
    while done < n:
        block = os.pread(fd_in, min(ZERO_BLOCK_SIZE, n - done), pos + done)
        if not block:
            break
        if block != _ZEROS[:len(block)]:
            view = memoryview(block)
            while view:
                k = os.pwrite(fd_out, view, pos + done)
                view = view[k:]
                done += k
        else:
            done += len(block)
    return done


def _convert(src: Path, fmt: str, dest: Path, progress: Progress) -> None:
    """qemu-img convert -p to qcow2, its '(NN.NN/100%)' lines (ended by \\r) turned into
    progress calls. No -U: if a running VM has the image open for writing, qemu-img refuses
    to read it (as it should: the copy would be torn) and says so."""
    report = _Reporter(progress, f"converting {fmt} to qcow2")
    report(0.0)
    argv = ["qemu-img", "convert", "-p", "-f", fmt, "-O", "qcow2", str(src), str(dest)]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise HostError("qemu-img is not installed; install it (Debian/Ubuntu: "
                        "apt-get install qemu-utils)") from None
    assert proc.stdout is not None
    messages: list[str] = []
    try:
        pending = b""
        while chunk := os.read(proc.stdout.fileno(), 4096):
            *pieces, pending = re.split(rb"[\r\n]", pending + chunk)
            for piece in pieces:
                m = _PROGRESS_RE.search(piece)
                if m:
                    report(float(m.group(1)) / 100)
                    piece = piece[:m.start()] + piece[m.end():]
                if piece.strip():
                    messages.append(piece.decode(errors="replace").strip())
        if pending.strip() and not _PROGRESS_RE.search(pending):
            messages.append(pending.decode(errors="replace").strip())
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    if code != 0:
        reason = _reason("\n".join(messages))
        if "No space left" in reason:
            raise OSError(errno.ENOSPC, reason)
        raise ImageError(f"qemu-img could not convert {src} to qcow2: {reason}")

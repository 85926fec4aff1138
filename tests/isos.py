"""ISO files for tests: a bootable one that says a marker on the serial port, and a plain one.

The marker ISO boots the same way a real installer does (El Torito, BIOS and, when
grub-efi-amd64-bin is installed, UEFI), so a test sees that a VM really booted from its
CD-ROM, under SeaBIOS or OVMF, when ``marker`` shows up on ttyS0. GRUB then sleeps, so the
VM stays up until the test stops it. Under TCG the marker comes about 0.6 s after start
with SeaBIOS and about 6 s with OVMF.

Under OVMF the marker is printed twice on the serial port, on one line ("MARKERMARKER"):
GRUB's "console" output is OVMF's console, which OVMF also sends to the serial port. Look
for it as a substring.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

GRUB_CFG = """\
set timeout=0
serial --unit=0 --speed=115200
terminal_output serial console
echo '{marker}'
sleep 100000
"""


def grub_mkrescue() -> str | None:
    """The path of grub-mkrescue, or None (tests that need it skip then)."""
    return shutil.which("grub-mkrescue")


def has_efi() -> bool:
    """Whether grub-mkrescue will make the ISO UEFI-bootable too (it needs GRUB's EFI
    modules, package grub-efi-amd64-bin, and mformat, package mtools)."""
    return Path("/usr/lib/grub/x86_64-efi").is_dir() and shutil.which("mformat") is not None


def has_bios() -> bool:
    """Whether grub-mkrescue will make the ISO BIOS-bootable (package grub-pc-bin)."""
    return Path("/usr/lib/grub/i386-pc").is_dir()


def make_marker_iso(path: Path, marker: str) -> Path:
    """A bootable ISO at ``path`` whose GRUB prints ``marker`` on ttyS0, then waits forever."""
    if not marker or any(c in marker for c in "'\n\r"):
        raise ValueError(f"the marker {marker!r} must be one line without single quotes")
    tool = grub_mkrescue()
    if tool is None:
        raise RuntimeError("grub-mkrescue is not installed (packages grub-common, xorriso, "
                           "grub-pc-bin, grub-efi-amd64-bin, mtools)")
    with tempfile.TemporaryDirectory(prefix="marker-iso-") as tmp:
        root = Path(tmp)
        (root / "boot/grub").mkdir(parents=True)
        (root / "boot/grub/grub.cfg").write_text(GRUB_CFG.format(marker=marker))
        # No fonts, translations or themes: half the size (9 MB instead of 20), same boot.
        result = subprocess.run([tool, "--fonts=", "--locales=", "--themes=", "-o", str(path),
                                 str(root)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"grub-mkrescue failed ({result.returncode}): "
                           f"{result.stderr.strip()[-2000:]}")
    return path


def make_plain_iso(path: Path) -> Path:
    """An ISO 9660 file at ``path`` with one small file on it and no boot record."""
    import pycdlib  # only the tests that make ISOs need it (pip install pycdlib)

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="VMKIT_PLAIN")
    data = b"a plain, unbootable ISO made by vmkit's tests\n"
    iso.add_fp(io.BytesIO(data), len(data), "/README.TXT;1", rr_name="README.txt",
               joliet_path="/README.txt")
    try:
        iso.write(str(path))
    finally:
        iso.close()
    return path

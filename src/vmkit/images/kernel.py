"""Turn a Debian bzImage into the uncompressed vmlinux that QEMU boots through its PVH entry.

Booting vmlinux directly skips the real-mode setup code and the in-guest decompression, which
under TCG saves about a second of every boot (see FACTS.md).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from ..errors import ImageError


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    data = bzimage.read_bytes()
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        raise ImageError(f"{bzimage} is not a Linux bzImage")
    setup_sects = data[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = data[start : start + payload_length]
    if payload[:4] != b"\x02\x21\x4c\x18":  # LZ4 legacy frame, as CONFIG_KERNEL_LZ4 writes it
        raise ImageError(f"{bzimage}: payload is not LZ4-compressed; this kernel is not supported")
    # lz4 stops at the end of the frame; the kernel appends its size after it, which it ignores.
    result = subprocess.run(["lz4", "-d", "-c"], input=payload, capture_output=True, check=False)
    if result.stdout[:4] != b"\x7fELF":
        raise ImageError(f"could not decompress the kernel in {bzimage}: {result.stderr.decode()}")
    out.write_bytes(result.stdout)

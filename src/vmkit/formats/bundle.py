"""vmkit's own export format: one tar file that holds a VM.

    vmkit.json   what the VM is (spec, MAC, state), where it came from (image, QEMU version),
                 and the size and SHA-256 of every other member
    disk.qcow2   the disk, its whole backing chain flattened into one standalone qcow2
    state        with --memory: QEMU's saved state (RAM, CPUs, devices) taken with the disk

The manifest comes first, so an import knows what to expect before it reads the rest, and
checks every byte against it as it unpacks: a truncated or altered file is refused.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .tarstream import CHUNK, Member, digest

MANIFEST, DISK, STATE = "vmkit.json", "disk.qcow2", "state"
FORMAT, VERSION = "vmkit-export", 1
MAX_MANIFEST = 1 << 20


@dataclass(frozen=True)
class Bundle:
    manifest: dict[str, Any]
    disk: Path
    state: Path | None


def members(manifest: dict[str, Any], disk: Path, state: Path | None) -> list[Member]:
    """The archive's members; fills in the manifest's ``files`` with sizes and checksums."""
    files = {DISK: disk, **({STATE: state} if state is not None else {})}
    manifest = {**manifest, "format": FORMAT, "version": VERSION, "files": {
        name: {"size": path.stat().st_size, "sha256": digest(path)}
        for name, path in files.items()}}
    head = Member(MANIFEST, data=json.dumps(manifest, indent=1).encode())
    return [head, *(Member(name, path) for name, path in files.items())]


def manifest_of(archive: Path) -> dict[str, Any] | None:
    """The manifest of a vmkit export, or None if ``archive`` is not one."""
    try:
        with tarfile.open(archive, "r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                return None
            return _parse(tar.extractfile(first).read(MAX_MANIFEST))  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError):
        return None


def _parse(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError:
        raise InvalidInputError(f"the export's {MANIFEST} is not valid JSON: the file is "
                                "damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInputError(f"the export's {MANIFEST} does not describe a vmkit export")
    if manifest.get("version") != VERSION:
        raise InvalidInputError(f"this export has format version {manifest.get('version')}; "
                                f"this vmkit reads version {VERSION}: upgrade vmkit")
    files = manifest.get("files")
    if not isinstance(files, dict) or DISK not in files or not set(files) <= {DISK, STATE}:
        raise InvalidInputError(f"the export's {MANIFEST} lists no disk: the file is damaged")
    return manifest


def unpack(archive: Path, into: Path, label: str) -> Bundle:
    """Unpack a vmkit export into ``into``, checking each member's size and SHA-256."""
    try:
        with tarfile.open(archive, "r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST:
                raise InvalidInputError(f"{label} is not a vmkit export: it does not start "
                                        f"with {MANIFEST}")
            manifest = _parse(tar.extractfile(first).read(MAX_MANIFEST))  # type: ignore[union-attr]
            expected = manifest["files"]
            seen = set()
            while (member := tar.next()) is not None:
                want = expected.get(member.name)
                if want is None or member.name in seen or not member.isfile():
                    raise InvalidInputError(f"{label} holds an unexpected member "
                                            f"{member.name!r}: it was altered or damaged")
                seen.add(member.name)
                _copy_checked(tar, member, into / member.name, want, label)
    except (tarfile.TarError, EOFError) as e:
        raise InvalidInputError(f"{label} is truncated or damaged ({e}); export it again") from None
    if missing := set(expected) - seen:
        raise InvalidInputError(f"{label} is truncated: {', '.join(sorted(missing))} "
                                "missing; export it again")
    return Bundle(manifest, into / DISK, into / STATE if STATE in expected else None)


def _copy_checked(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path,
                  want: dict[str, Any], label: str) -> None:
    h, size = hashlib.sha256(), 0
    src = tar.extractfile(member)
    with open(dest, "wb") as out:
        while data := src.read(CHUNK):  # type: ignore[union-attr]
            h.update(data)
            size += len(data)
            out.write(data)
    if size != want.get("size") or h.hexdigest() != want.get("sha256"):
        dest.unlink()
        raise InvalidInputError(f"{label} is damaged: {member.name} does not match its "
                                "checksum; export it again")



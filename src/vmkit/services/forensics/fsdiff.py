"""What changed between two states of a guest's ext4 disk, read from the host side.

Each state (a raw disk, or a qcow2 chain converted to a sparse raw file) is unpacked with
e2fsprogs' ``debugfs rdump``, which reads ext4 in user space: nothing is mounted and no guest
runs. The two trees are then compared file by file: type, permissions, size and content.
"""

from __future__ import annotations

import filecmp
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ...errors import HostError, InvalidInputError


@dataclass(frozen=True)
class Change:
    kind: str  # "added", "removed" or "changed"
    path: str  # as the guest sees it, e.g. /etc/hostname
    type: str  # "file", "dir", "link" or "other"

    def to_json(self) -> dict[str, str]:
        return {"change": self.kind, "path": self.path, "type": self.type}


def diff(before: Path, after: Path, work: Path) -> list[Change]:
    """Changes from disk ``before`` to disk ``after`` (raw or qcow2 files), sorted by path."""
    trees = [_unpack(disk, work / name) for disk, name in ((before, "a"), (after, "b"))]
    return compare(*trees)


def _unpack(disk: Path, dest: Path) -> Path:
    raw = disk
    if disk.suffix == ".qcow2":
        raw = dest.with_suffix(".raw")
        _run(["qemu-img", "convert", "-U", "-O", "raw", str(disk), str(raw)], "read the disk")
    dest.mkdir()
    out = _run(["debugfs", "-R", f"rdump / {dest}", str(raw)], "read the disk's filesystem")
    if "Bad magic number" in out or "Couldn't find valid filesystem" in out:
        raise InvalidInputError("the VM's disk does not hold an ext4 filesystem vmkit can read")
    if raw != disk:
        raw.unlink()
    return dest


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HostError(f"cannot {what}: {(result.stderr or result.stdout).strip()[-300:]}")
    return result.stderr


def _entries(root: Path) -> dict[str, os.stat_result]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found["/" + os.path.relpath(path, root)] = os.lstat(path)
    return found


def _type(st: os.stat_result) -> str:
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "link" if stat.S_ISLNK(st.st_mode) else "other"


def compare(a: Path, b: Path) -> list[Change]:
    old, new = _entries(a), _entries(b)
    changes = [Change("removed", p, _type(st)) for p, st in old.items() if p not in new]
    for path, st in new.items():
        was = old.get(path)
        if was is None:
            changes.append(Change("added", path, _type(st)))
        elif _differs(was, st, a / path[1:], b / path[1:]):
            changes.append(Change("changed", path, _type(st)))
    return sorted(changes, key=lambda c: c.path)


def _differs(was: os.stat_result, now: os.stat_result, old: Path, new: Path) -> bool:
    if stat.S_IFMT(was.st_mode) != stat.S_IFMT(now.st_mode) or \
            stat.S_IMODE(was.st_mode) != stat.S_IMODE(now.st_mode):
        return True
    if stat.S_ISLNK(now.st_mode):
        return os.readlink(old) != os.readlink(new)
    if stat.S_ISREG(now.st_mode):
        return was.st_size != now.st_size or not filecmp.cmp(old, new, shallow=False)
    return False

"""Which QEMU vmkit runs, and what it can do, found by asking that QEMU itself.

The system's ``qemu-system-x86_64`` by default; ``VMKIT_QEMU=PATH`` picks another, such as
QEMU 10.0 unpacked from bookworm-backports beside Debian 12's 7.2 (tools/get-qemu10). A QEMU
outside /usr brings its firmware and option ROMs along in ``PREFIX/share/qemu`` (``-L``).

What vmkit uses is decided from the probe, never from a version number alone where QEMU can
say: its QMP schema (migration capabilities), ``-machine help`` and ``-object help``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import HostError

ENV = "VMKIT_QEMU"
# Migration capabilities worth knowing about, as QEMU's schema names them.
CAPABILITIES = ("background-snapshot", "x-ignore-shared", "postcopy-ram", "switchover-ack",
                "mapped-ram", "dirty-limit")
# The oldest release whose live migration under TCG kept every busy guest whole in our
# trials (FACTS.md: 7.2 corrupts about 1 guest in 130 moves, 10.0 none in 80). Older ones get
# their migrated memory checked before the guest runs at the destination (migration.py).
TRUSTED_TCG_MIGRATION = (10, 0)


@dataclass(frozen=True)
class Qemu:
    binary: str
    version: str  # "7.2.19", "10.0.2"
    datadir: str | None  # -L: firmware and ROMs of a QEMU unpacked outside /usr
    features: tuple[str, ...]  # machine types, memory backends and migration capabilities

    @property
    def release(self) -> tuple[int, int]:
        return release(self.version)

    def loads_states_of(self, version: str) -> bool:
        """Whether this QEMU can load a VM state saved by QEMU ``version``: only one of the
        same release (major.minor) is sure to."""
        return release(version) == self.release != (0, 0)

    def has(self, feature: str) -> bool:
        return feature in self.features


def release(version: str) -> tuple[int, int]:
    """(major, minor) of a QEMU version such as "10.0.2"; (0, 0) if it is not one."""
    major, minor, *_ = (version.split(".") + ["0", "0"])
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else (0, 0)


def find() -> str:
    """The QEMU binary: $VMKIT_QEMU, or qemu-system-x86_64 on PATH."""
    if chosen := os.environ.get(ENV):
        if not os.access(chosen, os.X_OK):
            raise HostError(f"{ENV}={chosen} is not an executable QEMU; unset it or point it at "
                            "qemu-system-x86_64 (tools/get-qemu10 unpacks QEMU 10.0)")
        return str(Path(chosen).absolute())
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise HostError(
            "QEMU is not installed: install it with 'apt-get install qemu-system-x86 qemu-utils'"
        )
    return qemu


def current() -> Qemu:
    """The QEMU this host runs, probed once per binary (and again if it is replaced)."""
    binary = find()
    return probe(binary, os.stat(binary).st_mtime_ns)


@functools.cache
def probe(binary: str, mtime_ns: int) -> Qemu:
    """Ask ``binary`` what it is and what it supports (about 0.1 s)."""
    datadir = _datadir(binary)
    base = [binary, *(["-L", datadir] if datadir else [])]
    version = _run([binary, "--version"])
    machines = _run([*base, "-machine", "help"])
    objects = _run([*base, "-object", "help"])
    features = [m for m in ("microvm", "q35") if re.search(rf"^{m}\s", machines, re.M)]
    features += [o for o in ("memory-backend-file", "memory-backend-memfd")
                 if re.search(rf"^\s*{o}$", objects, re.M)]
    features += [c for c in CAPABILITIES if c in _schema_enum_values(base)]
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", version)
    return Qemu(binary, m.group(1) if m else "unknown", datadir, tuple(features))


def _datadir(binary: str) -> str | None:
    prefix = Path(binary).resolve().parent.parent
    share = prefix / "share" / "qemu"
    return str(share) if prefix != Path("/usr") and share.is_dir() else None


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              check=False).stdout
    except OSError as e:
        raise HostError(f"cannot run {argv[0]}: {e.strerror}") from None


def _schema_enum_values(base: list[str]) -> set[str]:
    """Every enum value in QEMU's QMP schema (query-qmp-schema), from a QEMU that runs no
    guest (-machine none). It is told to quit only once the whole schema has been read: a
    QEMU that quits with output still queued drops it."""
    try:
        proc = subprocess.Popen([*base, "-machine", "none", "-nodefaults", "-display", "none",
                                 "-qmp", "stdio"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return set()
    assert proc.stdin and proc.stdout
    values: set[str] = set()
    try:
        proc.stdin.write('{"execute": "qmp_capabilities"}\n{"execute": "query-qmp-schema"}\n')
        proc.stdin.flush()
        for line in proc.stdout:
            reply = json.loads(line)
            if isinstance(reply.get("return"), list):  # the schema: the last answer we need
                values = {v for entry in reply["return"] if entry.get("meta-type") == "enum"
                          for v in entry.get("values", [])}
                break
        proc.stdin.write('{"execute": "quit"}\n')
        proc.stdin.flush()
    except (OSError, ValueError):
        pass  # no schema: the features it would show are taken as missing
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)
        proc.kill()
    return values

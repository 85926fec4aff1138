"""`vmkit cp` of files and directories with their modes and times: a tar archive made on one
side and unpacked on the other (the guest's own tar, run through exec), as `docker cp` does."""

from __future__ import annotations

import io
import os
import random
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

# Prints what the guest path is: "d" (a directory), "f MODE MTIME" (anything else), "-" (none).
PROBE = ('if [ -d "$1" ]; then echo d; elif [ -e "$1" ]; then stat -L -c "f %a %Y" "$1"; '
         'else echo -; fi')
UNPACK = 'tar -x -f "$1" -C "$2"; s=$?; rm -f "$1"; exit $s'


def probe(c: Any, name: str, path: str) -> list[str]:
    r = c.exec(name, ["sh", "-c", PROBE, "sh", path])
    return r.stdout.decode().split() or ["-"]


def copy_in(c: Any, src: str, name: str, path: str, recursive: bool) -> None:
    """Copy the local file or directory ``src`` to ``path`` in the guest."""
    if not os.path.lexists(src):
        raise InvalidInputError(f"{src} does not exist")
    if os.path.isdir(src) and not recursive:
        raise InvalidInputError(f"{src} is a directory: copy it with -r, e.g. "
                                f"vmkit cp -r {src} {name}:{path}")
    if probe(c, name, path)[0] == "d":  # into the directory, under its own name
        parent, arcname = path, os.path.basename(os.path.abspath(src))
    elif path.endswith("/"):
        raise InvalidInputError(f"{name}:{path} is not a directory in the guest")
    else:
        parent, arcname = os.path.dirname(path) or "/", os.path.basename(path)
    archive = f"{parent.rstrip('/')}/.vmkit-cp-{random.randrange(1 << 32):08x}.tar"
    with tempfile.TemporaryFile() as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(src, arcname, filter=_as_root)
        f.seek(0)
        try:
            c.write_file(name, archive, iter(lambda: f.read(1 << 20), b""))
        except Exception as e:
            if "No such file" in str(e):
                raise InvalidInputError(f"{name}:{parent} does not exist in the guest") from None
            raise
    r = c.exec(name, ["sh", "-c", UNPACK, "sh", archive, parent])
    if r.exit_code != 0:
        raise InvalidInputError(f"cannot copy into {name}:{path}: {_last_line(r.stderr)}")


def _as_root(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Files copied in belong to root in the guest (as docker cp makes them)."""
    return member.replace(uid=0, gid=0, uname="root", gname="root", deep=False)


def copy_out_dir(c: Any, name: str, path: str, dst: str) -> None:
    """Copy the guest directory ``path`` to ``dst``: into it when it is a directory (merged
    with what is there), else as ``dst`` itself."""
    base = os.path.basename(path.rstrip("/")) or "root"
    parent = os.path.dirname(path.rstrip("/")) or "/"
    target = Path(dst)
    into = target if target.is_dir() else Path(tempfile.mkdtemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent if str(
            target.parent) else "."))
    try:
        stream = _TarStream(c.exec_stream(name, ["tar", "-c", "-C", parent, "--", base]))
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(into, filter=_keep_modes)
        stream.drain()  # to the exit code, past the archive's end
        if stream.code != 0:
            raise InvalidInputError(f"cannot copy {name}:{path}: {_last_line(stream.err)}")
        if into is not target:
            os.rename(into / base, target)
    finally:
        if into is not target:
            shutil.rmtree(into, ignore_errors=True)


def _keep_modes(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tar_filter's safety (nothing outside ``dest``, no absolute paths), with the modes kept
    as they were in the guest (it would drop group and other write)."""
    safe = tarfile.tar_filter(member, dest)
    return safe.replace(mode=member.mode & 0o7777, deep=False) if safe.mode is not None \
        else safe


def set_mode_and_time(path: Path, facts: list[str]) -> None:
    """Give a file copied out the mode and time it had in the guest (PROBE's "f MODE MTIME")."""
    if len(facts) == 3:
        os.chmod(path, int(facts[1], 8))
        os.utime(path, (int(facts[2]), int(facts[2])))


def _last_line(err: bytes) -> str:
    lines = err.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "the guest's tar failed"


class _TarStream(io.RawIOBase):
    """exec's stdout as a file for tarfile; its stderr and exit code kept for after."""

    def __init__(self, events: Iterator[tuple[str, bytes | int]]) -> None:
        self.events, self.pending, self.err, self.code = events, b"", b"", -1

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self.pending:
            event = next(self.events, None)
            if event is None:
                return 0
            stream, data = event
            if stream == "exit":
                self.code = int(data)
            elif stream == "stderr":
                self.err += data  # type: ignore[operator]
            else:
                self.pending = data  # type: ignore[assignment]
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def drain(self) -> None:
        while self.readinto(bytearray(65536)):
            pass

"""borg, the store of backups: one repository per ``Repo``, driven through its command line.

borg deduplicates, compresses, optionally encrypts and checks itself; vmkit writes no chunk
store of its own. Each backup is one archive, written by ``borg create`` from the raw disk
image vmkitd puts together in its staging space (and the memory state), so the fixed-size
chunker finds the unchanged 4 MiB blocks of the image at the same offsets again. What vmkit knows of a backup
rides in the archive's comment (JSON), so the repository alone says what it holds.

borg's own messages are turned into one line a user can act on: the repository is missing,
locked by another borg, its disk is full, or its data is damaged.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...errors import ConflictError, HostError, InvalidInputError, NoSpaceError, NotFoundError
from . import raw

CHUNKER = "fixed,4194304"  # disk images change in place: fixed 4 MiB blocks dedupe them
COMPRESSION = "lz4"
ENCRYPTIONS = ("none", "repokey", "repokey-blake2")
LOCK_WAIT = "5"  # seconds to wait for another borg's lock before saying so
_SSH = re.compile(r"^ssh://[A-Za-z0-9._-]+@[A-Za-z0-9.-]+(:\d+)?/.+$")


@dataclass(frozen=True)
class Repo:
    """A borg repository vmkit stores backups in: ``location`` is a local path or
    ssh://USER@HOST/PATH; ``passphrase`` (encrypted repositories) is kept by vmkitd."""
    name: str
    location: str
    encryption: str
    passphrase: str = ""

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.location, "encryption": self.encryption}


def check_location(location: str) -> str:
    """A repository's location as borg takes it: an absolute path, or ssh://USER@HOST/PATH."""
    if location.startswith("ssh://"):
        if not _SSH.match(location):
            raise InvalidInputError(f"{location!r} is not ssh://USER@HOST/PATH")
        return location
    if not location.startswith("/"):
        raise InvalidInputError(f"give the repository's absolute path or ssh://USER@HOST/PATH, "
                                f"not {location!r}")
    return str(Path(location))


def explain(repo: Repo, stderr: str, what: str) -> Exception:
    """borg's failure (its stderr) as the one error a user can act on."""
    text = stderr.strip()
    where = f"repository {repo.name} ({repo.location})"
    if "does not exist" in text or "is not a valid repository" in text:
        return NotFoundError(f"{where} is missing: {what} failed; mount its disk again, or "
                             f"remove it with 'vmkit backup repo rm {repo.name}'")
    if "Failed to create/acquire the lock" in text:
        return ConflictError(f"{where} is locked by another borg process: {what} failed; "
                             f"wait for it, or run 'borg break-lock {repo.location}' if none "
                             "runs any more")
    if "No space left on device" in text:
        return NoSpaceError(f"the disk of {where} is full: {what} failed and nothing of it "
                            "was kept (earlier backups are intact); free some space or prune "
                            "old backups with 'vmkit backup rm'")
    lines = text.splitlines()
    last = next((line for line in lines if re.search(r"error|corrupt|mismatch", line, re.I)),
                lines[-1] if lines else "no message")
    return HostError(f"borg failed on {where}: {what}: {last}")


def env(repo: Repo) -> dict[str, str]:
    """borg's environment: never a prompt (a passphrase or an ssh password would hang a
    daemon). vmkitd's own BORG_RSH (e.g. "ssh -i KEY") is kept, made non-interactive."""
    rsh = f"{os.environ.get('BORG_RSH', 'ssh')} -oBatchMode=yes"
    return dict(os.environ, BORG_PASSPHRASE=repo.passphrase, BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
                BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_RSH=rsh)


async def run(repo: Repo, what: str, *args: str, cwd: Path | None = None,
              ok: tuple[int, ...] = (0, 1)) -> str:
    """Run ``borg ARGS`` on ``repo``; its stdout, or the explained error. Exit codes ``ok``
    succeed (1: warnings only, but for ``check`` it means damage found)."""
    proc = await asyncio.create_subprocess_exec(
        "borg", "--lock-wait", LOCK_WAIT, *args, env=env(repo), cwd=cwd,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except BaseException:  # cancelled: borg rolls back what it had not committed
        proc.terminate()
        await proc.wait()
        raise
    if proc.returncode not in ok:
        raise explain(repo, err.decode(errors="replace"), what)
    return out.decode(errors="replace")


async def watch(repo: Repo, what: str, progress: Callable[[dict[str, Any]], None],
                *args: str, cwd: Path | None = None) -> str:
    """Run ``borg ARGS`` on ``repo``, passing each progress message (borg's JSON log) on as it
    comes; its stdout. Only exit code 0 succeeds. Cancelled, borg is stopped (and keeps
    nothing it had not committed)."""
    proc = await asyncio.create_subprocess_exec(
        "borg", "--lock-wait", LOCK_WAIT, "--progress", "--log-json", *args, env=env(repo),
        cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    messages = []
    try:
        assert proc.stderr is not None and proc.stdout is not None
        out = asyncio.ensure_future(proc.stdout.read())
        async for line in proc.stderr:
            try:
                m = json.loads(line)
            except ValueError:
                messages.append(line.decode(errors="replace"))
                continue
            if str(m.get("type", "")).startswith(("progress", "archive_progress")):
                progress(m)
            elif m.get("message"):
                messages.append(str(m["message"]))
        await proc.wait()
    except BaseException:
        proc.terminate()  # borg rolls back and lets its lock go
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise explain(repo, "\n".join(messages), what)
    return (await out).decode(errors="replace")


async def init(repo: Repo) -> None:
    """Make ``repo`` if its location holds none; check that it opens if it does."""
    try:
        await run(repo, "open the repository", "list", "--short", repo.location)
    except NotFoundError:
        await run(repo, "make the repository", "init", "--make-parent-dirs",
                  "--encryption", repo.encryption, repo.location)


def archive(repo: Repo, name: str) -> str:
    return f"{repo.location}::{name}"


async def archives(repo: Repo, prefix: str = "") -> list[dict[str, Any]]:
    """The archives in ``repo`` (named ``prefix``*), oldest first: name, time, comment."""
    out = await run(repo, "list the backups", "list", "--json", "--format", "{comment}",
                    *(["--glob-archives", f"{prefix}*"] if prefix else []), repo.location)
    return list(json.loads(out)["archives"])


def read(repo: Repo, name: str, member: str, cache: Path) -> subprocess.Popen[bytes]:
    """A borg writing archive ``name``'s file ``member`` to its stdout. It bypasses the locks
    (the repository's, and with a ``cache`` directory of its own, the cache's): it runs while
    this vmkitd writes a new archive to the same repository (borg never changes an archive's
    chunks in place, and vmkitd prunes a repository only between backups)."""
    return subprocess.Popen(
        ["borg", "--bypass-lock", "extract", "--stdout", archive(repo, name), member],
        env={**env(repo), "BORG_CACHE_DIR": str(cache)}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def extract_to(repo: Repo, name: str, member: str, dest: Path, size: int,
                     progress: Callable[[int], None]) -> None:
    """Archive ``name``'s file ``member`` (``size`` bytes) into the sparse file ``dest``.
    Cancelled, borg is stopped."""
    proc = read(repo, name, member, dest.parent / "borg-cache")
    stop = threading.Event()

    def copy() -> int:
        assert proc.stdout is not None
        out: IO[bytes] = proc.stdout
        with open(dest, "wb") as f:
            raw.sparse_copy(iter(lambda: out.read(raw.BLOCK), b""), f, stop, progress)
        return proc.wait()

    task = asyncio.get_running_loop().run_in_executor(None, copy)
    try:
        code = await asyncio.shield(task)
    except BaseException:
        stop.set()
        proc.kill()
        await asyncio.wait([task])
        raise
    assert proc.stderr is not None
    if code not in (0, 1):
        raise explain(repo, proc.stderr.read().decode(errors="replace"), f"read backup {name}")
    if (got := dest.stat().st_size) != size:
        raise HostError(f"backup {name}'s {member} has {got} bytes, not {size}: run "
                        f"'vmkit backup verify {name}'")


async def create(repo: Repo, name: str, comment: str, files: list[str], cwd: Path,
                 progress: Callable[[int], None]) -> dict[str, Any]:
    """Archive ``files`` (in ``cwd``) as ``name``; once borg committed, the archive as it
    tells of it (name, start, stats...), and ``progress`` (bytes read) as it goes. Cancelled
    or failed, borg keeps nothing of it."""
    def step(m: dict[str, Any]) -> None:
        if m.get("type") == "archive_progress" and "original_size" in m:
            progress(int(m["original_size"]))
    out = await watch(repo, f"backup {name}", step, "create", "--json", "--chunker-params",
                      CHUNKER, "--compression", COMPRESSION, "--files-cache", "disabled",
                      "--comment", comment.replace("{", "{{").replace("}", "}}"),
                      archive(repo, name), *files, cwd=cwd)
    return dict(json.loads(out)["archive"])

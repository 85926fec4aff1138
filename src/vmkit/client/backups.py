"""The SDK's calls about backups: borg repositories, backups, restores, checks, schedules."""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING

from ..errors import InvalidInputError
from . import answers as A
from .answers import Answer
from .connection import LONG, Connection, seg

if TYPE_CHECKING:
    from ..models import Backup, BackupRepo, BackupSchedule, Operation

REPO: Answer[BackupRepo] = Answer("BackupRepo")
REPOS: Answer[list[BackupRepo]] = Answer("BackupRepo", many=True)
BACKUP: Answer[Backup] = Answer("Backup")
BACKUPS: Answer[list[Backup]] = Answer("Backup", many=True)
SCHEDULE: Answer[BackupSchedule] = Answer("BackupSchedule")
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}\.\d{8}T\d{6}(-\d+)?")
SCHEDULES: Answer[list[BackupSchedule]] = Answer("BackupSchedule", many=True)


def _id(backup_id: str) -> str:
    """A backup's id as a URL path segment, checked first."""
    if not ID.fullmatch(backup_id):
        raise InvalidInputError(f"{backup_id!r} is not a backup id (VM.YYYYMMDDTHHMMSS); "
                                "'vmkit backup ls' lists them")
    return urllib.parse.quote(backup_id, safe="")


def _repo(repo: str | None) -> dict[str, str]:
    return {"repo": repo} if repo else {}


class BackupCalls(Connection):
    """Mixed into :class:`vmkit.Client`::

        c.add_backup_repo("usb", "/mnt/usb/vmkit")
        c.wait_operation(c.create_backup("web").id)      # full, then incremental
        b = c.list_backups("web")[-1]
        c.wait_operation(c.restore_backup(b.id, name="web-copy").id)
    """

    def list_backup_repos(self) -> list[BackupRepo]:
        """The borg repositories backups go to."""
        return self._call("GET", "/backups/repos", REPOS)

    def add_backup_repo(self, name: str, location: str, encryption: str = "none"
                        ) -> BackupRepo:
        """Make a borg repository at ``location`` (a path on vmkitd's host, or
        ssh://USER@HOST/PATH), or take the one there, as ``name``."""
        return self._call("POST", "/backups/repos", REPO, timeout=LONG,
                          json={"name": name, "location": location, "encryption": encryption})

    def remove_backup_repo(self, name: str) -> None:
        """Forget a repository; the backups in it stay."""
        self._do("DELETE", f"/backups/repos/{seg(name, 'repository')}")

    def list_backups(self, vm: str | None = None, repo: str | None = None) -> list[Backup]:
        """Backups (of ``vm``), in every repository or in ``repo``, oldest first."""
        params = {**_repo(repo), **({"vm": vm} if vm else {})}
        return self._call("GET", "/backups", BACKUPS, params=params, timeout=LONG)

    def get_backup(self, backup_id: str, repo: str | None = None) -> Backup:
        """One backup, by its id (VM.YYYYMMDDTHHMMSS)."""
        return self._call("GET", f"/backups/{_id(backup_id)}", BACKUP,
                          params=_repo(repo), timeout=LONG)

    def create_backup(self, vm: str, repo: str | None = None, memory: bool = False
                      ) -> Operation:
        """Start backing ``vm`` up (incrementally when its last backup allows); returns the
        operation: ``wait_operation`` follows it, ``cancel_operation`` calls it off."""
        return self._call("POST", "/backups", A.OPERATION,
                          json={"vm": vm, "repo": repo, "memory": memory})

    def restore_backup(self, backup_id: str, name: str | None = None, repo: str | None = None
                       ) -> Operation:
        """Start restoring: a new VM ``name`` from the backup, or (no ``name``) its own stopped
        VM rolled back; returns the operation (its target is the VM) to ``wait_operation``
        or ``cancel_operation``."""
        return self._call("POST", f"/backups/{_id(backup_id)}/restore", A.OPERATION,
                          json={"name": name, "repo": repo}, timeout=LONG)

    def verify_backup(self, backup_id: str, repo: str | None = None) -> Operation:
        """Start reading the backup back and checking every chunk; ``wait_operation`` raises,
        naming the backup, if it is damaged."""
        return self._call("POST", f"/backups/{_id(backup_id)}/verify", A.OPERATION,
                          params=_repo(repo), timeout=LONG)

    def remove_backup(self, backup_id: str, repo: str | None = None) -> None:
        """Remove a backup from its repository; the others stay whole."""
        self._do("DELETE", f"/backups/{_id(backup_id)}", params=_repo(repo),
                 timeout=LONG)

    def set_backup_schedule(self, vm: str, every: str, repo: str | None = None,
                            **keep: int) -> BackupSchedule:
        """Back ``vm`` up every ``every`` ("1h"), then prune with ``keep_hourly=24``,
        ``keep_daily=7``... (borg prune's rules: last, hourly, daily, weekly, monthly)."""
        rules = {k.removeprefix("keep_"): n for k, n in keep.items() if n}
        return self._call("PUT", f"/backups/schedules/{seg(vm)}", SCHEDULE,
                          json={"every": every, "repo": repo, "keep": rules})

    def list_backup_schedules(self) -> list[BackupSchedule]:
        """Every backup schedule, with how its runs went (runs, failures, missed)."""
        return self._call("GET", "/backups/schedules", SCHEDULES)

    def remove_backup_schedule(self, vm: str) -> None:
        """Stop backing ``vm`` up on schedule; its backups stay."""
        self._do("DELETE", f"/backups/schedules/{seg(vm)}")

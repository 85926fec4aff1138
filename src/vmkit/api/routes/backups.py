"""/v1/backups: repositories, backups, restores, checks and schedules, on the backups service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ...server import Server
from ...models import Backup, BackupRepo, BackupSchedule
from ..models import Operation
from ..params import NamePath, VmName

BackupId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}\.\d{8}T\d{6}(-\d+)?$")]
RepoName = Annotated[str, NamePath]
RepoQuery = Annotated[str | None, Query(max_length=63, description="the repository; default: "
                                                                   "the only one")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoCreate(_Body):
    name: str = Field(max_length=63)
    location: str = Field(max_length=4096, description="an absolute path on the daemon's host, "
                                                       "or ssh://USER@HOST/PATH")
    encryption: str = Field("none", description="none, repokey or repokey-blake2 (vmkitd "
                                                "keeps the passphrase)")


class BackupCreate(_Body):
    vm: str = Field(max_length=63)
    repo: str | None = Field(None, max_length=63)
    memory: bool = Field(False, description="add memory and devices (a running VM)")


class BackupRestore(_Body):
    name: str | None = Field(None, max_length=63, description="a new VM; default: the backed-up "
                                                              "VM itself, which must be stopped")
    repo: str | None = Field(None, max_length=63)


class ScheduleSet(_Body):
    every: str = Field(max_length=16, description="30m, 1h, 1d...")
    repo: str | None = Field(None, max_length=63)
    keep: dict[str, int] = Field({}, description="last, hourly, daily, weekly, monthly -> count")


def router(server: Server) -> APIRouter:
    api = APIRouter()
    backups = server.backups

    @api.get("/v1/backups/repos", response_model=list[BackupRepo])
    async def list_repos() -> list[dict[str, Any]]:
        return backups.list_repos()

    @api.post("/v1/backups/repos", response_model=BackupRepo, status_code=201)
    async def add_repo(body: RepoCreate) -> dict[str, Any]:
        """Make a borg repository at ``location`` (or take the one there)."""
        return await backups.add_repo(body.name, body.location, body.encryption)

    @api.delete("/v1/backups/repos/{name}", status_code=204)
    async def remove_repo(name: RepoName) -> None:
        """Forget the repository; its backups stay in it."""
        backups.remove_repo(name)

    @api.get("/v1/backups/schedules", response_model=list[BackupSchedule])
    async def list_schedules() -> list[dict[str, Any]]:
        return backups.list_schedules()

    @api.put("/v1/backups/schedules/{name}", response_model=BackupSchedule)
    async def set_schedule(name: VmName, body: ScheduleSet) -> dict[str, Any]:
        """Back the VM up every ``every``; after each backup, prune its backups with ``keep``."""
        return backups.set_schedule(name, body.every, body.keep, body.repo)

    @api.delete("/v1/backups/schedules/{name}", status_code=204)
    async def remove_schedule(name: VmName) -> None:
        backups.remove_schedule(name)

    @api.get("/v1/backups", response_model=list[Backup])
    async def list_backups(vm: Annotated[str | None, Query(max_length=63)] = None,
                           repo: RepoQuery = None) -> list[dict[str, Any]]:
        """Backups (of ``vm``), oldest first, read from the repositories."""
        return await backups.backups(vm, repo)

    @api.post("/v1/backups", response_model=Operation, status_code=202)
    async def create_backup(body: BackupCreate) -> dict[str, Any]:
        """Back a VM up; follow the operation (kind "backup"), DELETE it to call it off."""
        return backups.start_create(body.vm, body.repo, body.memory)

    @api.get("/v1/backups/{backup_id}", response_model=Backup)
    async def get_backup(backup_id: BackupId, repo: RepoQuery = None) -> dict[str, Any]:
        return await backups.get(backup_id, repo)

    @api.post("/v1/backups/{backup_id}/restore", response_model=Operation, status_code=202)
    async def restore_backup(backup_id: BackupId, body: BackupRestore) -> dict[str, Any]:
        """Start restoring: a new VM from the backup, or its own (stopped) VM rolled back to
        it; follow the operation (kind "backup-restore"), DELETE it to call it off."""
        return await backups.start_restore(backup_id, body.name, body.repo)

    @api.post("/v1/backups/{backup_id}/verify", response_model=Operation, status_code=202)
    async def verify_backup(backup_id: BackupId, repo: RepoQuery = None) -> dict[str, Any]:
        """Start reading the whole backup back, every chunk checked; the operation (kind
        "backup-verify") fails, naming the backup, if it is damaged."""
        return await backups.start_verify(backup_id, repo)

    @api.delete("/v1/backups/{backup_id}", status_code=204)
    async def remove_backup(backup_id: BackupId, repo: RepoQuery = None) -> None:
        await backups.remove(backup_id, repo)

    return api

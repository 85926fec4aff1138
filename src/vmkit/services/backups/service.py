"""Backups: a VM's disk (and memory) into a borg repository elsewhere, incrementally, and
back out as a new VM or the same one rolled back; verified, pruned and scheduled.

What vmkitd keeps in VMKIT_HOME/backups: the repositories it knows (``repos.json``, with the
passphrases of encrypted ones), per VM the bitmap its next incremental backup reads and the
backup that bitmap counts from (``chains.json``), the sizes borg reported for each backup
(``sizes.json``), and the schedules. The backups themselves, and what each one is, live in
the repositories only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core.core import Core
from ...errors import ConflictError, InvalidInputError, NotFoundError, VmkitError
from ...machine import qemu
from ...paths import atomic_write, new_id
from ...spec import VmSpec, validate_name
from ...state import LIVE, require
from . import borg, job, make, restore
from .schedules import KEEPS, Scheduler, describe, parse_every

ID = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})\.\d{8}T\d{6}(-\d+)?$", re.I)


class Backups:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.dir = core.paths.root / "backups"
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.staging = self.dir / "staging"
        shutil.rmtree(self.staging, ignore_errors=True)  # what a stopped daemon left
        (self.dir / "cache").mkdir(mode=0o700, exist_ok=True)
        for image in (self.dir / "cache").glob("*.raw"):  # of VMs removed since
            if not core.has_vm(image.stem):
                image.unlink()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # per repo
        self._named: dict[str, set[str]] = {}  # repo -> the backups this vmkitd made in it
        self.scheduler = Scheduler(self.dir / "schedules.json", self._scheduled)
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the schedules (from vmkitd's event loop)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self.scheduler.loop())

    # --- small files --------------------------------------------------------------------

    def _read(self, name: str) -> dict[str, Any]:
        path = self.dir / name
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def _write(self, name: str, data: dict[str, Any]) -> None:
        atomic_write(self.dir / name, json.dumps(data, indent=1).encode())

    # --- repositories ---------------------------------------------------------------------

    def _repos(self) -> dict[str, borg.Repo]:
        return {n: borg.Repo(**r) for n, r in self._read("repos.json").items()}

    def repo(self, name: str | None) -> borg.Repo:
        """The repository ``name``, or the only one there is."""
        repos = self._repos()
        if name is None:
            if len(repos) == 1:
                return next(iter(repos.values()))
            raise InvalidInputError("no backup repository yet: add one with 'vmkit backup repo "
                                    "add NAME PATH'" if not repos else
                                    f"choose a repository with --repo ({', '.join(repos)})")
        if name not in repos:
            raise NotFoundError(f"no backup repository named {name!r}; 'vmkit backup repo ls' "
                                "lists them")
        return repos[name]

    def list_repos(self) -> list[dict[str, Any]]:
        return [r.public() for r in self._repos().values()]

    async def add_repo(self, name: str, location: str, encryption: str = "none"
                       ) -> dict[str, Any]:
        """Make a borg repository at ``location`` (or take the one there) as ``name``."""
        validate_name(name, "repository")
        if encryption not in borg.ENCRYPTIONS:
            raise InvalidInputError(f"encryption {encryption!r} is not one of "
                                    f"{', '.join(borg.ENCRYPTIONS)}")
        repos = self._repos()
        if name in repos:
            raise ConflictError(f"a backup repository named {name} exists; remove it with "
                                f"'vmkit backup repo rm {name}' or choose another name")
        repo = borg.Repo(name, borg.check_location(location), encryption,
                         secrets.token_urlsafe(32) if encryption != "none" else "")
        await borg.init(repo)
        self._write("repos.json", {**{n: vars(r) for n, r in repos.items()}, name: vars(repo)})
        return repo.public()

    def remove_repo(self, name: str) -> None:
        """Forget repository ``name``; its backups stay where they are."""
        self.repo(name)
        if users := self.scheduler.using(name):
            raise ConflictError(f"repository {name} is used by the backup schedules of "
                                f"{', '.join(users)}; remove those first")
        self._write("repos.json", {n: vars(r) for n, r in self._repos().items() if n != name})

    # --- backups --------------------------------------------------------------------------

    def describe(self, repo: borg.Repo, archive: dict[str, Any]) -> dict[str, Any]:
        try:
            m = json.loads(archive.get("comment") or "{}")
        except ValueError:
            m = {}
        sizes = self._read("sizes.json").get(f"{repo.name}/{archive['name']}", {})
        return {"id": archive["name"], "repo": repo.name, "vm": m.get("vm"),
                "time": archive["time"], "kind": m.get("kind"), "memory": bool(m.get("memory")),
                "size": m.get("disk_size", 0) + m.get("state_size", 0),
                "deduplicated_size": sizes.get("deduplicated_size"),
                "read_bytes": m.get("read", 0), "base": m.get("base")}

    async def backups(self, vm: str | None = None, repo: str | None = None) -> list[dict[str, Any]]:
        """Backups (of ``vm``), in every repository or in ``repo``, oldest first."""
        repos = [self.repo(repo)] if repo else list(self._repos().values())
        found = []
        for r in repos:
            found += [self.describe(r, a) for a in await borg.archives(r, f"{vm}." if vm else "")]
        return sorted(found, key=lambda b: b["time"])

    async def _find(self, backup_id: str, repo: str | None) -> tuple[borg.Repo, dict[str, Any]]:
        m = ID.match(backup_id)
        if not m:
            raise InvalidInputError(f"{backup_id!r} is not a backup id (VM.YYYYMMDDTHHMMSS); "
                                    "'vmkit backup ls' lists them")
        repos = [self.repo(repo)] if repo else list(self._repos().values())
        hits = []
        for r in repos:
            hits += [(r, a) for a in await borg.archives(r, f"{m.group(1)}.")
                     if a["name"] == backup_id]
        if not hits:
            raise NotFoundError(f"no backup {backup_id}; 'vmkit backup ls' lists them")
        if len(hits) > 1:
            raise ConflictError(f"backup {backup_id} is in several repositories; choose one "
                                "with --repo")
        return hits[0]

    async def get(self, backup_id: str, repo: str | None = None) -> dict[str, Any]:
        return self.describe(*await self._find(backup_id, repo))

    def start_create(self, vm: str, repo: str | None = None, memory: bool = False
                     ) -> dict[str, Any]:
        """Check the request and start backing ``vm`` up; returns the operation to follow
        (kind "backup"; DELETE it to call the backup off)."""
        _, op_id = self._start(vm, repo, memory)
        return self.core.operation(op_id)

    def _start(self, vm: str, repo: str | None, memory: bool) -> tuple[asyncio.Task[None], str]:
        rec = self.core.record(vm)
        require("snapshot", rec.state, vm)  # at once: booting or stopping VMs wait
        if memory and rec.state not in LIVE:
            raise InvalidInputError(f"VM {vm} is {rec.state}: it has no memory to back up; "
                                    "start it, or leave out --memory")
        r = self.repo(repo)

        async def work(progress: make.Progress, _: str) -> str:
            return f"backup {(await self.create(vm, r, memory, progress))['id']} stored"
        return self._operation("backup", vm, "nothing was stored", work)

    def _operation(self, kind: str, target: str, cancelled: str,
                   work: Callable[[make.Progress, str], Awaitable[str]]
                   ) -> tuple[asyncio.Task[None], str]:
        """Run ``work`` (given a progress callback and the operation's id; it returns the
        message of its success) as operation ``kind`` on ``target``, cancellable by DELETE."""
        store = self.core.store
        op = store.add_operation(kind, target)

        def progress(fraction: float, message: str) -> None:
            store.update_operation(op.id, progress=fraction, message=message)

        async def run() -> None:
            try:
                message = await work(progress, op.id)
                store.update_operation(op.id, state="succeeded", progress=1.0, message=message)
            except asyncio.CancelledError:
                store.update_operation(op.id, state="failed", progress=1.0, message="cancelled",
                                       error=f"cancelled: {cancelled}")
                raise
            except Exception as e:  # recorded on the operation for the client to show
                msg = e.message if isinstance(e, VmkitError) else f"{type(e).__name__}: {e}"
                store.update_operation(op.id, state="failed", progress=1.0, message="failed",
                                       error=msg)
                raise
            finally:
                self.core.cancels.pop(op.id, None)

        task = asyncio.create_task(run())
        self.core.cancels[op.id] = task.cancel
        self.core.spawn(_quietly(task))
        return task, op.id

    async def create(self, vm: str, repo: borg.Repo, memory: bool, progress: make.Progress
                     ) -> dict[str, Any]:
        """Back ``vm`` up into ``repo`` (see make.py); the backup as ``list`` shows it."""
        async with self._locks[repo.name]:
            name = make.new_name(vm, self._named.get(repo.name, set()))
            staging = make.staging_dir(self.staging, name)
            chains = self._read("chains.json")
            chain = chains.get(vm) if chains.get(vm, {}).get("repo") == repo.name else None
            image: make.Image | None = None
            try:
                rec = self.core.record(vm)
                if memory:
                    image = await make.memory_image(self.core, vm, staging)
                elif rec.state in LIVE:
                    image = await make.live_image(self.core, vm, staging, chain,
                                                  f"{job.PREFIX}{name}", repo, self._cache(vm),
                                                  progress)
                else:
                    image = await make.stopped_image(self.core, vm, staging)
                comment = make.meta(vm, rec.spec.to_json(), image)
                archive = await make.store(repo, name, comment, image, progress)
                self._named.setdefault(repo.name, set()).add(name)
                await self._committed(vm, repo, name, image, archive["stats"])
            except BaseException:
                if image is not None and image.bitmaps and image.machine:
                    await job.rollback(image.machine, image.bitmaps)
                raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        # As 'backup ls' will show it, without asking borg again (each call opens the repo).
        return self.describe(repo, {"name": name, "time": archive["start"],
                                    "comment": json.dumps(comment)})

    async def _committed(self, vm: str, repo: borg.Repo, name: str, image: make.Image,
                         stats: dict[str, Any]) -> None:
        """borg has backup ``name``: reset the bitmap, note where the next one starts."""
        sizes = self._read("sizes.json")
        sizes[f"{repo.name}/{name}"] = {k: stats.get(k) for k in ("original_size",
                                                                  "deduplicated_size")}
        self._write("sizes.json", sizes)
        self._forget_chain(vm)
        if image.bitmaps is not None and image.machine is not None:
            with contextlib.suppress(VmkitError):  # else the next backup is a full one
                await job.commit(image.machine, image.bitmaps)
                # The image stays as the base of the next incremental backup.
                os.replace(image.path, self._cache(vm))
                chains = self._read("chains.json")
                chains[vm] = {"repo": repo.name, "archive": name, "bitmap": image.bitmaps.new,
                              "layer": image.layer, "size": image.size}
                self._write("chains.json", chains)

    def _cache(self, vm: str) -> Path:
        """Where the image of ``vm``'s last backup is kept (for its next incremental one)."""
        return self.dir / "cache" / f"{vm}.raw"

    def _forget_chain(self, vm: str) -> None:
        """``vm``'s next backup is a full one."""
        chains = self._read("chains.json")
        chains.pop(vm, None)
        self._write("chains.json", chains)
        self._cache(vm).unlink(missing_ok=True)

    async def remove(self, backup_id: str, repo: str | None = None) -> None:
        r, _ = await self._find(backup_id, repo)
        async with self._locks[r.name]:
            await borg.run(r, f"remove backup {backup_id}", "delete", borg.archive(r, backup_id))
            await borg.run(r, "free the space", "compact", r.location)

    async def start_verify(self, backup_id: str, repo: str | None = None) -> dict[str, Any]:
        """Start reading the backup back, every chunk checked against its hash; the operation
        (kind "backup-verify") fails, naming the backup, if it is damaged."""
        r, _ = await self._find(backup_id, repo)

        async def work(progress: make.Progress, _: str) -> str:
            await self.verify(r, backup_id, progress)
            return f"backup {backup_id} is intact"
        return self.core.operation(self._operation("backup-verify", backup_id,
                                                   "the check stopped early", work)[1])

    async def verify(self, r: borg.Repo, backup_id: str, progress: make.Progress) -> None:
        steps = {"repository.check": (0.0, "checking the repository's segments"),
                 "check.verify_data": (0.5, "reading every chunk back")}

        def step(m: dict[str, Any]) -> None:
            base, message = steps.get(str(m.get("msgid")), (0.0, "checking"))
            if m.get("total"):
                progress(base + 0.5 * int(m["current"]) / int(m["total"]), message)
        async with self._locks[r.name]:
            try:
                await borg.watch(r, f"verify backup {backup_id}", step, "check",
                                 "--verify-data", borg.archive(r, backup_id))
            except VmkitError as e:
                raise type(e)(f"backup {backup_id} is damaged: {e.message}") from None

    async def prune(self, vm: str, repo: borg.Repo, keep: dict[str, int]) -> None:
        if not keep:
            return
        async with self._locks[repo.name]:
            await borg.run(repo, f"prune the backups of {vm}", "prune",
                           "--glob-archives", f"{vm}.*",
                           *[a for rule, n in keep.items() for a in (f"--keep-{rule}", str(n))],
                           repo.location)
            await borg.run(repo, "free the space", "compact", repo.location)

    # --- restore --------------------------------------------------------------------------

    async def start_restore(self, backup_id: str, name: str | None = None,
                            repo: str | None = None) -> dict[str, Any]:
        """Start restoring ``backup_id`` as a new VM ``name``, or as its own VM, which must be
        stopped, rolled back (operation kind "backup-restore", its target the VM). With
        memory, the VM runs on from where the backup was taken."""
        r, archive = await self._find(backup_id, repo)
        m = json.loads(archive["comment"])
        spec = VmSpec.from_json(m["spec"])
        target = validate_name(name or m["vm"])
        restore.check_target(self.core, target, m["vm"])
        here = qemu.current()
        if m["memory"] and not here.loads_states_of(m["qemu"]):
            raise InvalidInputError(f"backup {backup_id} holds memory saved by QEMU {m['qemu']}; "
                                    f"this host's QEMU {here.version} cannot load it")

        async def work(progress: make.Progress, op_id: str) -> str:
            staging = make.staging_dir(self.staging, f"restore-{new_id()}")
            try:
                raw, state = await restore.extract(r, m, backup_id, staging, progress)
                if not self.core.has_vm(target):
                    await restore.new_vm(self.core, replace(spec, name=target), raw, state,
                                         progress)
                    return f"restored {backup_id} as {target}"
                await restore.roll_back(self.core, target, raw, state, progress,
                                        lambda: self._committing(target, op_id))
                return f"rolled {target} back to {backup_id}"
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self.core.operation(self._operation(
            "backup-restore", target, f"VM {target} was not made or rolled back", work)[1])

    def _committing(self, vm: str, op_id: str) -> None:
        """``vm``'s disk is being replaced: no more cancelling, and its next backup is full."""
        self.core.cancels.pop(op_id, None)
        self._forget_chain(vm)

    # --- schedules --------------------------------------------------------------------------

    def set_schedule(self, vm: str, every: str, keep: dict[str, int], repo: str | None = None
                     ) -> dict[str, Any]:
        self.core.record(vm)
        r = self.repo(repo)
        return describe(self.scheduler.set(vm, r.name, parse_every(every), keep))

    def list_schedules(self) -> list[dict[str, Any]]:
        return [describe(s) for s in self.scheduler.schedules.values()]

    def remove_schedule(self, vm: str) -> None:
        self.scheduler.remove(vm)

    async def _scheduled(self, vm: str, repo: str, keep: dict[str, int]) -> None:
        task, _ = self._start(vm, repo, memory=False)
        await task
        await self.prune(vm, self.repo(repo), keep)

    def metrics(self) -> bytes:
        """The schedules' counters, in Prometheus' text format."""
        return ("\n".join(self.scheduler.metrics()) + "\n").encode()


async def _quietly(task: asyncio.Task[None]) -> None:
    """Wait for a backup whose own handler records how it ended."""
    with contextlib.suppress(BaseException):
        await task


__all__ = ["Backups", "KEEPS"]

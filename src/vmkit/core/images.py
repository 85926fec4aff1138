"""Images as the API offers them: list, build and import (as operations to follow), receive
from another host, remove; and the operations themselves."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..errors import ConflictError, InvalidInputError, VmkitError
from ..images import importer
from ..images.debian import DebianOptions
from ..images.store import Cancelled
from ..store import Operation
from .describe import describe_image, describe_operation
from .registry import Registry
from .transfers import Transfers


Progress = Callable[[float, str], None]


class Images:
    def __init__(self, reg: Registry, transfers: Transfers) -> None:
        self.core = reg
        self.transfers = transfers
        self._builds: dict[str, Operation] = {}  # by image name

    def all(self) -> list[dict[str, Any]]:
        return [describe_image(i) for i in self.core.store.images()]

    def get(self, name: str) -> dict[str, Any]:
        return describe_image(self.core.images.get(name))

    def build(self, name: str, force: bool = False, builder: str | None = None,
              options: DebianOptions | None = None) -> dict[str, Any]:
        """Start building ``name`` in the background; returns the operation to follow (the
        one already running, if another caller started it)."""
        if (running := self._builds.get(name)) is not None:
            return self.core.operation(running.id)
        if self.core.store.image(name) and not force:
            raise ConflictError(f"image {name!r} exists; rebuild it with --force")
        if force and (users := self._users(name)):
            raise ConflictError(f"image {name!r} is used by {', '.join(users)}; "
                                "remove them before rebuilding it")
        return self._operation("image-build", name, lambda progress: self.core.images.build(
            name, progress, builder, options))

    def import_file(self, name: str, source: str) -> dict[str, Any]:
        """Start importing the disk or ISO file at ``source`` (a path on this host) as
        image ``name``; returns the operation to follow."""
        if name in self._builds:
            raise ConflictError(f"image {name!r} is being built or imported already")
        if self.core.store.image(name):
            raise ConflictError(f"image {name!r} exists; choose another --name or remove it "
                                f"with 'vmkit image rm {name}'")
        path = Path(source)
        if not path.is_absolute():
            raise InvalidInputError(f"give the file's absolute path, not {source!r}")
        importer.inspect(path)  # refuse a bad file now, not in the operation
        return self._operation("image-import", name, lambda progress: self.core.images.import_file(
            name, path, progress))

    async def ensure(self, name: str, progress: Progress, source: Path | None = None) -> None:
        """Image ``name``, built now if it is missing (or imported from ``source``, a path on
        this host), following a build already running; ``progress`` hears how it goes.
        Cancelled, it calls off a build or import it started."""
        while self.core.store.image(name) is None:
            started = name not in self._builds
            op = self._builds.get(name) or self._start(name, source)
            try:
                while (now := self.core.store.operation(op.id)) and now.state == "running":
                    progress(now.progress or 0.0, now.message or "")
                    await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                if started and (cancel := self.core.cancels.get(op.id)) is not None:
                    cancel()
                raise
            if now is not None and now.state == "failed":
                raise VmkitError(f"making image {name} failed: {now.error}")

    def _start(self, name: str, source: Path | None) -> Operation:
        op_id = (self.build(name) if source is None else self.import_file(name, str(source)))["id"]
        op = self.core.store.operation(op_id)
        assert op is not None
        return op

    def _operation(self, kind: str, name: str, work: Callable[[Progress], Any]
                   ) -> dict[str, Any]:
        store = self.core.store
        op = store.add_operation(kind, name)
        self._builds[name] = op
        cancelled = threading.Event()
        self.core.cancels[op.id] = cancelled.set

        def progress(fraction: float, message: str) -> None:
            if cancelled.is_set():
                raise Cancelled()
            store.update_operation(op.id, progress=fraction, message=message)

        async def run() -> None:
            try:
                await asyncio.to_thread(work, progress)
                store.update_operation(op.id, state="succeeded", progress=1.0, message="done")
            except Cancelled:
                store.update_operation(op.id, state="failed", progress=1.0, message="cancelled",
                                       error="cancelled: nothing was stored")
            except Exception as e:  # recorded on the operation for the client to show
                msg = e.message if isinstance(e, VmkitError) else f"{type(e).__name__}: {e}"
                store.update_operation(op.id, state="failed", progress=1.0, message="failed",
                                       error=msg)
            finally:
                del self._builds[name]
                self.core.cancels.pop(op.id, None)

        self.core.spawn(run())
        return describe_operation(op)

    def _users(self, name: str) -> list[str]:
        """VMs, and snapshots kept by templates, whose disks are built on image ``name``."""
        store = self.core.store
        vms = [v.name for v in store.vms() if name in (v.spec.image, v.spec.cdrom)]
        kept = [f"template {t.name}" for t in store.templates()
                if (snap := store.snapshot(t.snapshot)) and
                name in (snap.spec.image, snap.spec.cdrom)]
        return vms + kept

    def remove(self, name: str) -> None:
        self.core.images.remove(name, self._users(name))

    async def receive(self, name: str, digest: str, chunks: AsyncIterator[bytes]
                      ) -> dict[str, Any]:
        """Store an image another vmkit host sends (a migration's base image)."""
        archive = await self.transfers.receive(chunks)
        try:
            image = await asyncio.to_thread(self.core.images.receive, name, digest, archive)
        finally:
            shutil.rmtree(archive.parent, ignore_errors=True)
        return describe_image(image)

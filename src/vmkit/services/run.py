"""``vmkit run`` as one server-side operation: everything the CLI, the SDK and the REST API
get alike when they ask for "a VM, now".

A run builds the image it needs if it is missing (tiny is always built: vmkitd probes KVM
with its kernel), then boots a fresh VM, or forks one from a memory snapshot or template
(``source``), or from the ready template of its image made on first use (``fast``). It
picks a friendly free name if none is given. Input is checked before anything starts, so
mistakes are answered at once; the rest is an operation to follow (kind "run", target: the
VM's name).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from ..core.boot import check_disk_fits
from ..core.core import Core
from ..core.images import Progress
from ..core.request import VmRequest
from ..errors import ConflictError, InvalidInputError, VmkitError
from ..images.store import BUILDERS
from ..spec import CLOUD_INIT_BUILDS, VmSpec, validate_name
from ..store import Operation

ADJECTIVES = (
    "agile amber bold brave bright brisk calm clever cosmic crisp curious daring eager fancy "
    "fearless fluffy gentle giddy glad golden happy hardy humble jolly keen kind lively lucky "
    "mellow merry mighty nimble noble plucky polite proud quick quiet rapid shiny silent sleek "
    "snappy spry steady sunny swift tidy vivid wise witty zesty").split()
NOUNS = (
    "badger beaver bison cheetah condor crane dingo dolphin eagle falcon ferret finch fox "
    "gazelle gecko heron ibis jackal koala lemur lynx marmot marten moose narwhal ocelot otter "
    "owl panda pelican penguin puffin quokka rabbit raven robin salmon seal sparrow stoat swan "
    "tapir tiger toucan turtle walrus weasel wombat yak zebra").split()


class Forks(Protocol):
    """What a run needs of the snapshot service (passed in, so services stay independent)."""

    async def fork(self, source: str, name: str, ports: list[str] | None = None,
                   network: str | None = None, auto_remove: bool = False) -> dict[str, Any]: ...

    async def fast_template(self, image: str, cpus: int, memory_mib: int, nic: bool) -> str: ...


@dataclass(frozen=True)
class RunRequest:
    """What to run: the VM (an empty name: a generated one, such as brave-otter; its
    ``cdrom`` may be an ISO file's absolute path, imported on first use), or a fork of it."""
    vm: VmRequest
    source: str | None = None  # fork from VM@SNAP, a template, or a running VM
    fast: bool = False  # fork from the ready template of the image, made on first use


class Runs:
    def __init__(self, core: Core, forks: Forks) -> None:
        self.core = core
        self.forks = forks

    def start(self, req: RunRequest) -> dict[str, Any]:
        """Check ``req`` and start running it; returns the operation to follow."""
        name = validate_name(req.vm.name) if req.vm.name else self._free_name()
        if self.core.has_vm(name):
            raise ConflictError(f"a VM named {name} already exists; choose another name or "
                                f"remove it with 'vmkit rm {name}'")
        spec = self._check(req, name)
        op = self.core.store.add_operation("run", name)
        task = asyncio.create_task(self._run(op, req, spec))
        self.core.cancels[op.id] = task.cancel
        self.core.spawn(_finish(task))
        return self.core.operation(op.id)

    def _check(self, req: RunRequest, name: str) -> VmSpec:
        """The spec to boot (or, for a fork, the request checked as one would be)."""
        forked = req.source is not None or req.fast
        vm, image = req.vm, req.vm.image
        cdrom = self._cdrom(vm.cdrom)[0] if vm.cdrom else None
        spec = replace(vm, name=name, cdrom=cdrom).spec()
        if forked:
            _check_fork(req)
        elif image is not None and self.core.store.image(image) is not None:
            check_disk_fits(spec, self.core.boot.files(replace(spec, cdrom=None)))
        elif image is not None and image not in BUILDERS:
            self.core.images.get(image)  # raises NotFoundError, with its hint
        provisioned = vm.ssh_keys or vm.user_data or vm.env
        if provisioned and not forked and not self._cloud_init(image):
            raise InvalidInputError(f"--ssh-key, --user-data and -e are for images with "
                                    f"cloud-init (debian); {image or 'a blank disk'} has none")
        return spec

    def _cdrom(self, cdrom: str) -> tuple[str, Path | None]:
        """The image name of a run's CD, and the ISO file to import first, if it is one not
        stored yet. A path (it has a '/' or ends in .iso) is imported under the file's name
        on first use; a later run reuses that image while the file is unchanged."""
        if not _is_file(cdrom):
            return cdrom, None  # an image name; the boot says if there is none
        path = Path(cdrom)
        if not path.is_absolute():
            raise InvalidInputError(f"give the ISO's absolute path, not {cdrom!r}")
        name = re.sub(r"[^A-Za-z0-9-]+", "-", path.stem).strip("-")[:63] or "cdrom"
        if (image := self.core.store.image(name)) is None:
            return name, path
        try:
            stat = path.stat()
        except OSError as e:
            raise InvalidInputError(f"cannot read {cdrom}: {e.strerror}") from None
        if image.kind == "iso" and image.meta.get("source") == {
                "path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return name, None
        raise InvalidInputError(
            f"image {name} exists and is not this file as it is now: use --cdrom {name} for "
            f"the stored one, or 'vmkit image import {cdrom} --name NAME' for this one")

    def _cloud_init(self, image: str | None) -> bool:
        if image is None:
            return False
        if (rec := self.core.store.image(image)) is not None:
            return bool(rec.meta.get("cloud_init"))
        return image in CLOUD_INIT_BUILDS

    def _free_name(self) -> str:
        """adjective-noun, not taken by an existing VM."""
        taken = {r.name for r in self.core.store.vms()}
        for _ in range(50):
            candidate = f"{random.choice(ADJECTIVES)}-{random.choice(NOUNS)}"
            if candidate not in taken:
                return candidate
        return f"{candidate}-{random.randrange(10000)}"

    async def _run(self, op: Operation, req: RunRequest, spec: VmSpec) -> None:
        store = self.core.store

        def progress(fraction: float, message: str) -> None:
            store.update_operation(op.id, progress=fraction, message=message)

        try:
            await self._make(req, spec, progress)
            store.update_operation(op.id, state="succeeded", progress=1.0,
                                   message=f"{spec.name} is running")
        except asyncio.CancelledError:  # the VM, if it was being made, is removed by now
            store.update_operation(op.id, state="failed", progress=1.0, message="cancelled",
                                   error=f"cancelled: {spec.name} was not made")
        except Exception as e:  # recorded on the operation for the client to show
            msg = e.message if isinstance(e, VmkitError) else f"{type(e).__name__}: {e}"
            store.update_operation(op.id, state="failed", progress=1.0, message="failed",
                                   error=msg)
        finally:
            self.core.cancels.pop(op.id, None)

    async def _make(self, req: RunRequest, spec: VmSpec, progress: Progress) -> None:
        name = spec.name
        if req.source is None:
            for image in dict.fromkeys(("tiny", spec.image)):  # tiny: the KVM probe's kernel
                if image is not None and self.core.store.image(image) is None:
                    await self.core.image_ops.ensure(image, _scaled(progress, image))
        if req.vm.cdrom and _is_file(req.vm.cdrom) and spec.cdrom:  # checked by _cdrom
            await self.core.image_ops.ensure(spec.cdrom, _scaled(progress, spec.cdrom),
                                             Path(req.vm.cdrom))
        source = req.source
        if req.fast:
            progress(0.9, f"preparing the template of {spec.image} (first use only)")
            source = await self.forks.fast_template(spec.image or "tiny", spec.cpus,
                                                    spec.memory_mib, spec.network != "none")
        if source is not None:
            progress(0.95, f"forking {name} from {source}")
            await self.forks.fork(source, name, req.vm.ports, spec.network, spec.auto_remove)
            return
        progress(0.9, f"booting {name}" + (" and provisioning it" if spec.ssh_keys else ""))
        vm = await self.core.vms.create(spec)
        if (done := vm.get("cloud_init")) and done["status"] != "done":
            raise VmkitError(f"cloud-init failed in {name}: {done['detail']}. The VM runs on: "
                             f"see 'vmkit exec {name} -- cloud-init status --long'")


def _is_file(cdrom: str) -> bool:
    """Whether a run's ``cdrom`` names an ISO file (else a stored image)."""
    return "/" in cdrom or cdrom.lower().endswith(".iso")


async def _finish(task: asyncio.Task[None]) -> None:
    """Wait for a run that may be cancelled (its own handler records how it ended)."""
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _scaled(progress: Progress, image: str) -> Progress:
    """A build's progress as the first 90% of the run's."""
    return lambda fraction, message: progress(0.9 * fraction, f"image {image}: {message}")


def _check_fork(req: RunRequest) -> None:
    """A fork runs as its source was made: refuse what would make it otherwise."""
    vm = req.vm
    if vm.cdrom or vm.ssh_keys or vm.user_data or vm.env:
        raise InvalidInputError("a fork runs as its source was made: drop --cdrom, --ssh-key, "
                                "--user-data and -e")
    if vm.display != "none":
        raise InvalidInputError("a fork runs as its source was made: drop --display")
    if vm.io_limit:
        raise InvalidInputError("a fork runs as its source was made: drop --io-limit")
    if isinstance(vm.network, list) and len(vm.network) > 1:
        raise InvalidInputError("a fork has one network card, as its source: give one --network")
    if vm.disposable:
        raise InvalidInputError("--disposable boots a fresh VM: drop --from/--fast")
    if vm.restart != "no":
        raise InvalidInputError("a fork runs as its source was made: drop --restart")
    if vm.disk:
        raise InvalidInputError("a fork has its source's disk: drop --disk with --from/--fast")
    if req.source and req.fast:
        raise InvalidInputError("--from and --fast both choose what to fork: give one")

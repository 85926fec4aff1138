"""A backup back out of borg: as a new VM, or as its own stopped VM rolled back. With memory
the VM runs on from where the backup was taken.

The image is read out of borg as a stream (progress counts its bytes) into a sparse raw file
in the staging space (VMKIT_HOME/backups/staging), then converted into a qcow2 disk layer. Cancelled before the VM is
made or its disk swapped, borg is stopped and the staging files go: nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core.core import Core
from ...core.launch import Arrival, Resume, fresh_identity
from ...errors import ConflictError, InvalidStateError
from ...machine.identity import Identity, random_mac
from ...paths import new_id
from ...spec import VmSpec
from ...state import VmState
from . import borg, make

_MiB = 1 << 20


async def extract(repo: borg.Repo, meta: dict[str, Any], name: str, staging: Path,
                  progress: make.Progress) -> tuple[Path, Path | None]:
    """Backup ``name``'s disk image (and memory) as files in ``staging``."""
    members = [(make.IMAGE, int(meta["disk_size"]))]
    if meta.get("memory"):
        members.append(("state", int(meta["state_size"])))
    total, before = sum(size for _, size in members), 0
    for member, size in members:
        def step(n: int, before: int = before) -> None:
            progress(0.85 * (before + n) / max(total, 1),
                     f"reading {(before + n) // _MiB}/{total // _MiB} MiB out of borg")
        await borg.extract_to(repo, name, member, staging / member, size, step)
        before += size
    return staging / make.IMAGE, staging / "state" if meta.get("memory") else None


async def new_vm(core: Core, spec: VmSpec, raw: Path, state: Path | None,
                 progress: make.Progress) -> None:
    """A new VM ``spec.name`` on the restored image, with a fresh identity (MAC, machine id)
    and no port forwards (the original may hold them)."""
    async def disk(path: Path) -> None:
        progress(0.85, "converting the image into a disk layer")
        await make.qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
        progress(0.95, f"starting {spec.name}")

    mac = random_mac()
    resume = Resume(state, None, False, fresh_identity(spec, mac)) if state else None
    await core.launcher.register(replace(spec, ports=()), Arrival(disk, mac, resume=resume))


async def roll_back(core: Core, vm: str, raw: Path, state: Path | None,
                    progress: make.Progress, committing: Callable[[], None]) -> None:
    """VM ``vm`` (stopped) onto the restored image; with ``state``, started from it.
    ``committing`` is called once the disk is about to be swapped: no cancelling after."""
    async with core.locks[vm]:
        rec = core.record(vm)
        if rec.state not in (VmState.STOPPED, VmState.CRASHED):
            raise InvalidStateError(f"VM {vm} is {rec.state}; stop it with 'vmkit stop {vm}' "
                                    "to roll it back, or restore the backup as a new VM with "
                                    "--name NEW")
        layer = new_id()
        try:
            with core.layers.pinned(layer):
                progress(0.85, "converting the image into a disk layer")
                await make.qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw),
                                    str(core.paths.disk(layer)))
                committing()
                core.store.set_vm_disk(vm, layer, None)
                if state is not None:
                    progress(0.95, f"starting {vm}")
                    await core.launcher.start(replace(rec, disk=layer),
                                              Resume(state, None, False, Identity()))
        finally:  # the old disk's layers, or a half-converted one
            await core.layers.collect_garbage()


def check_target(core: Core, target: str, owner: str) -> None:
    """A restore onto an existing VM must be onto the VM the backup is of."""
    if core.has_vm(target) and target != owner:
        raise ConflictError(f"a VM named {target} exists and this is a backup of {owner}; "
                            "choose a new name with --name")

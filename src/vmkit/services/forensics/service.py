"""Looking into a VM from outside: its memory as an ELF core, what changed on its disk, and
its network traffic as a pcap. None of these needs anything in the guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...core.core import Core
from ...core.transfers import Download, then_remove
from ...errors import ConflictError, InvalidInputError, NotFoundError, VmkitError
from ...formats.tarstream import CHUNK
from ...machine import disks
from ...paths import new_id, open_nofollow
from . import fsdiff

DUMP_FD = "vmkit-dump"
CAPTURE_ID = "vmkit-capture"
SNAPLEN = 65535  # bytes kept of each packet: all of them


class Forensics:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._captures: dict[str, tuple[Path, int]] = {}  # VM -> (pcap, the QEMU writing it)

    # --- disk diff ----------------------------------------------------------------------

    async def diff(self, vm: str, before: str | None = None, after: str | None = None
                   ) -> list[dict[str, str]]:
        """Files added, removed and changed in the guest's filesystem from snapshot ``before``
        (default: the image the VM was made from) to snapshot ``after`` (default: now)."""
        core = self.core
        rec = core.record(vm)
        old = core.paths.disk(core.snapshot(vm, before).layer) if before else _bottom(
            core.disk_path(rec))
        if after:
            new_layer = core.snapshot(vm, after).layer
            core.layers.pin(new_layer)
        else:  # now: the top layer, frozen as a snapshot freezes it
            _, new_layer = await core.layers.freeze_now(vm, "diff")
        work = core.transfers.workdir()
        try:
            changes = await asyncio.to_thread(fsdiff.diff, old, core.paths.disk(new_layer), work)
        finally:
            core.layers.unpin(new_layer)
            shutil.rmtree(work, ignore_errors=True)
        return [c.to_json() for c in changes]

    # --- network capture -----------------------------------------------------------------

    async def start_capture(self, vm: str) -> dict[str, Any]:
        """Record every packet of the VM's NIC, both ways, into a pcap (QEMU's filter-dump)."""
        core = self.core
        core.live_machine(vm, "capture")  # at once, not after the lock of a VM booting
        async with core.locks[vm]:
            machine = core.live_machine(vm, "capture")
            if core.record(vm).spec.network == "none":
                raise InvalidInputError(f"VM {vm} has no network card (--network none): "
                                        "there is no traffic to capture")
            if vm in self._captures:
                old, pid = self._captures[vm]
                if pid == machine.pid:
                    raise ConflictError(f"VM {vm} is being captured already; stop that "
                                        f"capture first ('vmkit capture {vm} --stop -o FILE')")
                old.unlink(missing_ok=True)  # from an earlier run of the VM, never collected
            pcap = core.paths.vm(vm).dir / f"capture-{new_id()}.pcap"
            await machine.execute("object-add", {
                "qom-type": "filter-dump", "id": CAPTURE_ID, "netdev": "net0",
                "file": str(pcap), "maxlen": SNAPLEN})
            self._captures[vm] = (pcap, machine.pid)
        return {"vm": vm, "capturing": True}

    async def stop_capture(self, vm: str) -> Download:
        """End the VM's capture; the pcap, streamed (and then removed here)."""
        core = self.core
        core.record(vm)
        if vm not in self._captures:  # at once, not after the lock of a VM booting
            raise NotFoundError(f"VM {vm} is not being captured; start with "
                                f"'vmkit capture {vm} -o FILE'")
        async with core.locks[vm]:
            core.record(vm)
            pcap, _ = self._captures.pop(vm, (None, 0))
            if pcap is None or not pcap.exists():
                raise NotFoundError(f"VM {vm} is not being captured; start with "
                                    f"'vmkit capture {vm} -o FILE'")
            if (machine := core.machines.get(vm)) is not None:
                with contextlib.suppress(VmkitError):  # gone with a QEMU that stopped
                    await machine.execute("object-del", {"id": CAPTURE_ID})
            work = core.transfers.workdir()
            os.rename(pcap, work / pcap.name)
        return Download(f"{vm}.pcap", (work / pcap.name).stat().st_size,
                      then_remove(_chunks(work / pcap.name), work))

    async def dump(self, vm: str) -> Download:
        """The guest's memory as an ELF core file (QEMU's dump-guest-memory), which crash,
        gdb and volatility read. The guest pauses while it is written."""
        core = self.core
        core.live_machine(vm, "dump")  # at once, not after the lock of a VM booting
        async with core.locks[vm]:
            machine = core.live_machine(vm, "dump")
            work = core.transfers.workdir()
            elf = work / f"{vm}-memory.elf"
            fd = os.open(elf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                machine.qmp.send_fd_scm(fd)
                await machine.execute("getfd", {"fdname": DUMP_FD})
                await machine.execute("dump-guest-memory", {"paging": False,
                                                            "protocol": f"fd:{DUMP_FD}"})
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            finally:
                os.close(fd)
        return Download(elf.name, elf.stat().st_size, then_remove(_chunks(elf), work))


def _chunks(path: Path) -> Iterator[bytes]:
    with open_nofollow(path) as f:  # QEMU wrote it, as a user that could leave a symlink
        while data := f.read(CHUNK):
            yield data


def _bottom(top: Path) -> Path:
    """The last file of a disk chain: the image a VM was made from."""
    while (below := disks.backing_file(top)) is not None:
        top = below
    return top

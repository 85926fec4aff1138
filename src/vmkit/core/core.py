"""The Core: the one owner of state on this machine, made of its parts.

The registry (registry.py) keeps the VMs' records, locks and QEMU processes; request.py says
what a new VM is asked to be; boot.py the boot media; layers.py the disk layers; launch.py
the one register-and-launch path; lifecycle.py start, stop and removal; guest.py exec, files,
console and serial log; logtimes.py when that log grew; images.py image builds and operations; watch.py follows each QEMU;
recovery.py re-attaches on start. Services get the Core and register their hooks
(``Registry.hooks``); the core never calls a service by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import hosts
from ..errors import HostError
from ..machine import qemu
from .boot import BootMedia
from .guest import Guest
from .images import Images
from .launch import Launcher
from .layers import DiskLayers
from .lifecycle import Lifecycle
from .logtimes import LogTimes
from .recovery import recover
from .registry import Registry
from .transfers import Transfers
from .watch import Watch


class Core(Registry):
    """The VMs of one VMKIT_HOME: ``await Core.open(home)``, build the services on it (they
    register their hooks), then ``await core.recover()``."""

    boot: BootMedia
    layers: DiskLayers
    watch: Watch
    launcher: Launcher
    guest: Guest
    vms: Lifecycle
    image_ops: Images
    transfers: Transfers
    log_times: LogTimes

    @classmethod
    async def open(cls, home: Path) -> Core:
        """Take VMKIT_HOME ``home`` for this process: no other vmkitd may use it meanwhile."""
        core = cls(home)
        core.open_home()
        core.boot = BootMedia(core.paths, core.store, core.images)
        core.layers = DiskLayers(core)
        core.watch = Watch(core, core.layers)
        core.launcher = Launcher(core, core.boot, core.layers, core.watch)
        core.guest = Guest(core)
        core.vms = Lifecycle(core, core.launcher, core.layers, core.guest)
        core.watch.start = core.vms.start  # restart policies start VMs again
        core.transfers = Transfers(core.paths)
        core.image_ops = Images(core, core.transfers)
        core.log_times = LogTimes(core)
        return core

    def info(self) -> dict[str, Any]:
        """This host as /v1/info shows it: its home, QEMU, accelerator, limits and counts."""
        host_json = self.paths.run / "host.json"
        facts = json.loads(host_json.read_text()) if host_json.exists() else {}
        try:
            found: qemu.Qemu | None = qemu.current()
        except HostError:
            found = None
        return {"home": str(self.paths.root), "pid": os.getpid(),
                "qemu": found.binary if found else None,
                "qemu_version": found.version if found else None,
                "qemu_features": list(found.features) if found else [],
                "accel": facts.get("facts", {}).get("accel"),
                "accel_reason": facts.get("reason"), "limits": self.limits.describe(),
                "vms": len(self.store.vms()), "images": len(self.store.images())}

    def peers(self) -> list[dict[str, str]]:
        """The other vmkit hosts registered here ('vmkit host add'), without their tokens:
        {"name", "url"} each."""
        return [{"name": p.name, "url": p.url} for p in hosts.load(self.paths).values()]

    async def recover(self) -> None:
        """Re-attach to every VM still running and finish what a stopped daemon left."""
        await recover(self, self.watch, self.layers, self.transfers)
        self.spawn(self.log_times.run())  # when the serial logs grow: logs --since

"""When vmkitd starts: re-attach to every QEMU still running, finish or undo what the
daemon before it left half done (creates, arrivals, saves, transfers, disk layers), and
start again the VMs that died meanwhile (a host reboot) if their restart policy says so."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil

from ..errors import AgentError, VmkitError
from ..machine.process import Machine, exit_status_text, read_exit_status
from ..paths import new_id
from ..state import LIVE, VmState
from ..store import VmRecord
from .launch import AGENT_TIMEOUT
from .discard import discard, qemu_pid
from .layers import DiskLayers
from .registry import Registry
from .transfers import Transfers
from .watch import UNKNOWN_EXIT, Watch


log = logging.getLogger("vmkit.core")
S = VmState


async def recover(core: Registry, watch: Watch, layers: DiskLayers, transfers: Transfers
                  ) -> None:
    """Re-attach to every VM still running and finish what a stopped daemon left."""
    core.store.fail_interrupted_operations()
    core.images.clean()
    died: list[VmRecord] = []
    for rec in core.store.vms():
        if rec.creating:
            log.warning("removing VM %s: vmkitd stopped before its create finished", rec.name)
            await discard(core, layers, rec.name)
        elif core.paths.vm(rec.name).arriving.exists():  # its source still has it
            log.warning("removing VM %s: vmkitd restarted while it arrived by migration",
                        rec.name)
            await discard(core, layers, rec.name)
        else:
            _move_legacy_disk(core, rec)
            if not await _reattach(core, watch, layers, rec):
                died.append(rec)
    _remove_stray_vm_dirs(core)
    core.limits.clean()
    await layers.collect_garbage()
    transfers.clean()
    core.networks.restore()
    for rec in died:  # once their networks are back
        if rec.spec.restart != "no":
            watch.restart_later(rec.name)


def _move_legacy_disk(core: Registry, rec: VmRecord) -> None:
    """VMs made before disk layers kept their disk in their own directory: move it."""
    legacy = core.paths.vm(rec.name).legacy_disk
    if not rec.disk and legacy.exists():
        layer = new_id()
        os.rename(legacy, core.paths.disk(layer))  # a running QEMU keeps its open file
        core.store.set_vm_disk(rec.name, layer, rec.head)


def _remove_stray_vm_dirs(core: Registry) -> None:
    """Remove directories under vms/ of no VM: left by creates that a killed vmkitd never
    got to record (every VM being made, migrated or imported here is recorded first)."""
    for path in core.paths.vms.iterdir():
        if path.is_dir() and not path.is_symlink() and not core.has_vm(path.name):
            log.warning("removing %s: no VM has this directory", path)
            shutil.rmtree(path, ignore_errors=True)


async def _reattach(core: Registry, watch: Watch, layers: DiskLayers, rec: VmRecord
                   ) -> bool:
    """Re-attach to the VM's QEMU; False if the VM ran and its QEMU is gone (one being
    stopped when vmkitd went is not counted: it was asked to stop)."""
    if rec.state not in LIVE:
        return True
    vmp = core.paths.vm(rec.name)
    if pid := qemu_pid(core, rec):
        try:
            machine = await Machine.attach(vmp, pid, watch.handler(rec.name))
        except VmkitError as e:
            core.store.set_vm_state(rec.name, S.CRASHED, reason=f"cannot re-attach: {e}")
            return True  # its QEMU may run on: starting another would clash with it
        core.machines[rec.name] = machine
        for hook in core.hooks.reattach:
            await hook(rec, machine)
        await layers.recover(rec, machine)
        state = S.PAUSED if await machine.status() == "paused" else S.RUNNING
        core.store.set_vm_state(rec.name, state, pid=pid, started=rec.started)
        core.spawn(_connect_agent(machine))
        return True
    if rec.state == S.STARTING and rec.pid is None:  # vmkitd died before QEMU ran
        core.store.set_vm_state(rec.name, S.STOPPED,
                                reason="its start was interrupted when vmkitd stopped")
    else:
        code = read_exit_status(vmp.exit_status)
        what = (f"QEMU (pid {rec.pid}) {exit_status_text(code)} while vmkitd was not running"
                if code is not None else
                f"QEMU (pid {rec.pid}) exited while vmkitd was not running; {UNKNOWN_EXIT}")
        core.store.set_vm_state(rec.name, S.CRASHED, reason=watch.crash_reason(rec.name, what))
    return rec.state == S.STOPPING


async def _connect_agent(machine: Machine) -> None:
    with contextlib.suppress(AgentError):  # exec/stop report it when they need the agent
        await machine.agent.connect(timeout=AGENT_TIMEOUT)

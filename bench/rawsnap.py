"""Save and restore a guest with plain QEMU (no vmkit): the baseline of bench/snapshot.py and
bench/fork.py.

The guest is a copy of a vmkit VM: the same QEMU command line (read from its launched.json),
with its own disk overlay, sockets and logs in a temporary directory. Its state goes to a file
and comes back the way vmkit does it, so the difference is vmkit's own cost: QMP ``stop``,
``migrate`` to a file descriptor passed with ``getfd`` (the sandboxed QEMU may not spawn the
``exec:`` helper) with the bandwidth cap lifted; then a new QEMU with ``-incoming defer``,
``migrate-incoming`` from the file, ``cont``, and the guest agent's first answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from qemu.qmp import ConnectError, QMPClient
from rawboot import agent_ready


class RawGuest:
    def __init__(self, launched: Path, backing: str | None = None) -> None:
        """A copy of the VM whose launched.json is given, on a new disk layer over ``backing``
        (default: what the VM's own disk is layered on)."""
        info = json.loads(launched.read_text())
        self.tmp = Path(tempfile.mkdtemp(prefix="rawsnap-", dir="/tmp"))
        disk = next(a.split("file=")[1].split(",")[0] for a in info["argv"] if "file=" in a)
        backing = backing or json.loads(subprocess.check_output(
            ["qemu-img", "info", "-U", "--output=json", disk]))["backing-filename"]
        subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
                               "-F", "qcow2" if backing.endswith(".qcow2") else "raw",
                               str(self.tmp / "disk.qcow2")])
        argv = [a.replace(str(launched.parent), str(self.tmp)) for a in info["argv"]]
        self.argv = [a.replace(f"file={disk},", f"file={self.tmp / 'disk.qcow2'},") for a in argv]
        self.proc: asyncio.subprocess.Process | None = None
        self.qmp = QMPClient("raw")

    async def _spawn(self, *extra: str) -> None:
        for sock in ("qmp.sock", "agent.sock", "console.sock"):
            (self.tmp / sock).unlink(missing_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, *extra, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.qmp = QMPClient("raw")
        while True:
            try:
                await self.qmp.connect(str(self.tmp / "qmp.sock"))
                return
            except ConnectError:  # the socket is not there or not listening yet
                await asyncio.sleep(0.005)

    async def _ready(self, start: float) -> float:
        await asyncio.to_thread(agent_ready, str(self.tmp / "agent.sock"), start + 60)
        return time.monotonic() - start

    async def boot(self) -> float:
        start = time.monotonic()
        await self._spawn()
        return await self._ready(start)

    async def _migrated(self) -> None:
        while (await self.qmp.execute("query-migrate")).get("status") not in (
                "completed", "failed", "cancelled"):
            await asyncio.sleep(0.002)

    async def save(self, path: Path) -> float:
        """Seconds to pause the guest, save its state to ``path`` and resume it."""
        start = time.monotonic()
        await self.qmp.execute("stop")
        await self.qmp.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.qmp.send_fd_scm(fd)
            await self.qmp.execute("getfd", {"fdname": "state"})
            await self.qmp.execute("migrate", {"uri": "fd:state"})
            await self._migrated()
            os.fsync(fd)
        finally:
            os.close(fd)
        await self.qmp.execute("cont")
        return time.monotonic() - start

    async def restore(self, path: Path) -> float:
        """Seconds from spawning a new QEMU on ``path`` to the guest agent's answer."""
        await self.kill()
        start = time.monotonic()
        await self._spawn("-incoming", "defer")
        fd = os.open(path, os.O_RDONLY)
        try:
            self.qmp.send_fd_scm(fd)
            await self.qmp.execute("getfd", {"fdname": "state"})
            await self.qmp.execute("migrate-incoming", {"uri": "fd:state"})
            while (await self.qmp.execute("query-status"))["status"] == "inmigrate":
                await asyncio.sleep(0.001)
        finally:
            os.close(fd)
        await self.qmp.execute("cont")
        return await self._ready(start)

    async def kill(self) -> None:
        await stop_qemu(self.proc, self.qmp)
        self.proc = None

    async def close(self) -> None:
        await self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def stop_qemu(proc: asyncio.subprocess.Process | None, qmp: QMPClient) -> None:
    """Kill a QEMU we started (one whose guest panicked may be gone already)."""
    if proc:
        with contextlib.suppress(Exception):
            await qmp.disconnect()
        proc.kill()
        await proc.wait()

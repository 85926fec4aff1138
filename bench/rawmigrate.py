"""Live-migrate a guest between two plain QEMU processes on this host (no vmkit): the baseline
of bench/migrate.py.

The guest is a copy of a vmkit VM (its QEMU command line, from launched.json) on one disk
file that both QEMUs open, as shared storage: plain QEMU moves no disk. Each move starts a
new QEMU with ``-incoming`` on a free port, migrates with the bandwidth cap lifted (as vmkit
does), and reads QEMU's own total time and downtime; the guests bounce between two work
directories.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

from qemu.qmp import ConnectError, QMPClient
from rawboot import agent_ready
from rawsnap import RawGuest, stop_qemu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RawPair:
    def __init__(self, launched: Path, backing: str) -> None:
        self.guest = RawGuest(launched, backing)  # its tmp dir holds the disk; sockets per side
        self.side = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.qmp = QMPClient("raw-migrate")

    def _argv(self, side: int) -> list[str]:
        d = self.guest.tmp / f"side{side}"
        d.mkdir(exist_ok=True)
        return [a.replace(f"{self.guest.tmp}/", f"{d}/") if "disk.qcow2" not in a else a
                for a in self.guest.argv]

    async def _spawn(self, side: int, *extra: str) -> tuple[asyncio.subprocess.Process, QMPClient]:
        d = self.guest.tmp / f"side{side}"
        for sock in ("qmp.sock", "agent.sock", "console.sock"):
            (d / sock).unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(
            *self._argv(side), *extra, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        qmp = QMPClient(f"raw-{side}")
        while True:
            try:
                await qmp.connect(str(d / "qmp.sock"))
                return proc, qmp
            except ConnectError:
                await asyncio.sleep(0.005)

    async def boot(self) -> None:
        self.proc, self.qmp = await self._spawn(0)
        await asyncio.to_thread(agent_ready, str(self.guest.tmp / "side0" / "agent.sock"),
                                time.monotonic() + 120)

    async def run(self, command: str) -> None:
        """Start ``command`` in the guest through its agent (no output)."""
        import json

        path = str(self.guest.tmp / f"side{self.side}" / "agent.sock")
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(json.dumps({"execute": "guest-exec", "arguments": {
            "path": "/bin/sh", "arg": ["-c", command]}}).encode() + b"\n")
        await writer.drain()
        await reader.readline()
        writer.close()

    async def move(self) -> tuple[float, float, float]:
        """Migrate to a new QEMU. Seconds: from starting it to the guest agent's answer there
        (vmkit's measure), and QEMU's own total time and downtime."""
        other = 1 - self.side
        port = _free_port()
        start = time.monotonic()
        proc, qmp = await self._spawn(other, "-incoming", f"tcp:127.0.0.1:{port}")
        await self.qmp.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        await self.qmp.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
        while (info := await self.qmp.execute("query-migrate"))["status"] not in (
                "completed", "failed"):
            await asyncio.sleep(0.01)
        if info["status"] != "completed":
            raise RuntimeError(f"raw migration failed: {info.get('error-desc')}")
        await self.kill()
        self.proc, self.qmp, self.side = proc, qmp, other
        await asyncio.to_thread(agent_ready, str(self.guest.tmp / f"side{other}" / "agent.sock"),
                                time.monotonic() + 60)
        return time.monotonic() - start, info["total-time"] / 1000, info["downtime"] / 1000

    async def kill(self) -> None:
        await stop_qemu(self.proc, self.qmp)
        self.proc = None

    async def close(self) -> None:
        await self.kill()
        shutil.rmtree(self.guest.tmp, ignore_errors=True)

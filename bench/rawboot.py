"""Boot a guest with plain QEMU (no vmkit) and time it to the guest agent's first answer.

The baseline for bench/boot.py: the same kernel, initrd and disk, the same QEMU command line
that vmkit launched (read from a VM's launched.json), and the same definition of ready.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def agent_ready(path: str, deadline: float) -> None:
    """Wait until qemu-guest-agent answers guest-sync-delimited on ``path``."""
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                s.settimeout(0.5)
                s.sendall(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":4242}}\n')
                buf = b""
                while b"4242" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise OSError("closed")
                    buf += chunk
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("agent did not answer") from None
            time.sleep(0.01)


def raw_boot(launched: Path, timeout: float = 60.0) -> float:
    """Seconds from spawning QEMU to the agent's answer, for a copy of a vmkit VM's argv."""
    info = json.loads(launched.read_text())
    old_dir = str(launched.parent)
    with tempfile.TemporaryDirectory(prefix="rawboot-", dir="/tmp") as tmp:
        disk = Path(tmp, "disk.qcow2")
        base = next(a.split("file=")[1].split(",")[0] for a in info["argv"] if "file=" in a)
        backing = json.loads(subprocess.check_output(
            ["qemu-img", "info", "-U", "--output=json", base]))["backing-filename"]
        subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
                               "-F", "raw", str(disk)])
        argv = [a.replace(old_dir, tmp).replace(f"file={base},", f"file={disk},")
                for a in info["argv"]]  # its own disk, sockets and logs, in tmp
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            agent_ready(os.path.join(tmp, "agent.sock"), start + timeout)
            return time.monotonic() - start
        finally:
            proc.kill()
            proc.wait()

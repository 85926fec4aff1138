"""`vmkit console` on a real terminal: typing reaches the guest, Ctrl-] detaches, the VM runs on."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time

from ..conftest import Daemon


def read_until(fd: int, marker: bytes, timeout: float = 20) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"{marker!r} not seen; got {seen[-500:]!r}")
        try:
            seen += os.read(fd, 4096)
        except OSError:  # the other side closed
            break
    return seen


def test_console_in_a_terminal(daemon: Daemon) -> None:
    assert daemon.cli("run", "-d", "--name", "tty1", "--network", "none").returncode == 0
    pid, fd = pty.fork()
    if pid == 0:  # the child: vmkit on a terminal, as a user runs it
        os.execvpe(sys.executable, [sys.executable, "-m", "vmkit.cli.main", "console", "tty1"],
                   daemon.env)
    try:
        read_until(fd, b"Ctrl-]")
        os.write(fd, b"\r")
        os.write(fd, b"echo typed-$((6*7))\r")
        read_until(fd, b"typed-42")
        os.write(fd, b"\x1d")  # Ctrl-]
        assert b"Detached" in read_until(fd, b"keeps running")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
    vm = json.loads(daemon.cli("inspect", "tty1", "--json").stdout)
    assert vm["state"] == "running"
    assert daemon.cli("rm", "-f", "tty1").returncode == 0

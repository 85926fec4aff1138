"""`vmkit run` and `vmkit console` on a real terminal: typing reaches the guest's root shell,
Ctrl-] detaches, and the VM keeps running."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time

from ..conftest import Daemon


def read_until(fd: int, marker: bytes, timeout: float = 60) -> bytes:
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


def in_terminal(daemon: Daemon, *args: str, answer: bytes) -> None:
    """Run `vmkit ARGS` on a pty, type a command, expect its output, detach with Ctrl-]."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: vmkit on a terminal, as a user runs it
        os.execvpe(sys.executable, [sys.executable, "-m", "vmkit.cli.main", *args], daemon.env)
    try:
        read_until(fd, b"Ctrl-]")
        os.write(fd, b"\r")
        os.write(fd, b"echo typed-$((6*7)) $(whoami)@$(hostname)\r")
        read_until(fd, answer)
        os.write(fd, b"\x1d")  # Ctrl-]
        assert b"Detached" in read_until(fd, b"keeps running")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)


def test_run_attaches_then_console_reattaches(daemon: Daemon) -> None:
    in_terminal(daemon, "run", "--name", "tty1", "--network", "none",
                answer=b"typed-42 root@tty1")
    assert json.loads(daemon.cli("inspect", "tty1", "--json").stdout)["state"] == "running"
    in_terminal(daemon, "console", "tty1", answer=b"typed-42 root@tty1")
    assert json.loads(daemon.cli("inspect", "tty1", "--json").stdout)["state"] == "running"
    assert daemon.cli("rm", "-f", "tty1").returncode == 0

"""`vmkit shell` and `vmkit exec -it` on a real terminal (python's pty) against a real tiny
guest: a prompt, typed commands, the window's size followed, exit codes, and the shell
reading a piped script when its input is not a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import sys
import termios
from collections.abc import Iterator

import pytest

from ..conftest import Daemon
from .test_console import read_until


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def on_terminal(daemon: Daemon, *args: str) -> tuple[int, int]:
    """`vmkit ARGS` on a new 30x100 terminal: (pid, the terminal's master side)."""
    pid, fd = pty.fork()
    if pid == 0:
        set_size(0, 30, 100)
        os.execvpe(sys.executable, [sys.executable, "-m", "vmkit.cli.main", *args],
                   dict(daemon.env, TERM="xterm"))
    return pid, fd


def exit_code(pid: int, fd: int) -> tuple[int, bytes]:
    """Wait for vmkit to end: its exit code and what it printed last."""
    rest = b""
    try:
        while chunk := os.read(fd, 4096):
            rest += chunk
    except OSError:  # the terminal closed with vmkit
        pass
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), rest


@pytest.fixture
def vm(daemon: Daemon) -> Iterator[str]:
    assert daemon.cli("run", "-d", "-n", "sh1", "--network", "none").returncode == 0
    yield "sh1"
    daemon.cli("rm", "-f", "sh1")


def test_shell_prompt_commands_resize_and_exit_code(daemon: Daemon, vm: str) -> None:
    pid, fd = on_terminal(daemon, "shell", vm)
    read_until(fd, b"root@sh1:~# ")  # tiny's profile sets the prompt: a login shell, at home
    os.write(fd, b"stty size; echo typed-$((6*7)) $(tty)\r")
    seen = read_until(fd, b"typed-42 /dev/pts/")
    assert b"30 100" in seen
    set_size(fd, 41, 123)  # the window changes: the kernel tells vmkit with SIGWINCH
    os.kill(pid, signal.SIGWINCH)
    os.write(fd, b"sleep 1; stty size\r")
    read_until(fd, b"41 123")
    os.write(fd, b"exit 7\r")
    code, _ = exit_code(pid, fd)
    assert code == 7


def test_exec_it_runs_a_command_on_a_terminal(daemon: Daemon, vm: str) -> None:
    pid, fd = on_terminal(daemon, "exec", "-it", vm, "sh", "-c", "tty; read x; exit $x")
    read_until(fd, b"/dev/pts/")
    os.write(fd, b"5\r")
    code, _ = exit_code(pid, fd)
    assert code == 5
    pid, fd = on_terminal(daemon, "exec", "-it", vm, "no-such-command")
    code, out = exit_code(pid, fd)
    assert code == 127 and b"cannot run no-such-command" in out


def test_shell_runs_piped_input_and_exec_passes_stdin(daemon: Daemon, vm: str) -> None:
    r = daemon.cli("shell", vm, input=b"echo $HOME $(hostname)\nexit 3\n")
    assert (r.returncode, r.stdout) == (3, b"/root sh1\n"), r.stderr
    r = daemon.cli("exec", vm, "--", "cat", input=b"hi\n")
    assert (r.returncode, r.stdout) == (0, b"hi\n")
    r = daemon.cli("exec", "-t", vm, "true", input=b"")
    assert r.returncode == 125 and b"-t needs a terminal" in r.stderr

"""What a crashed VM's reason says of how QEMU ended (machine/process.py's pure parts, and
the exit status QEMU's jail writes down) and of its logs, which hold raw terminal output."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vmkit.machine.jail import Jail
from vmkit.machine.process import exit_status_text, log_tail, printable, read_exit_status


@pytest.mark.parametrize("raw, shown", [
    ("root@r1:/# \x1b[6n", "root@r1:/# "),  # busybox's cursor position query
    ("\x1b[1;31mred\x1b[0m and \x1b[?25lhidden cursor\x1b[?25h", "red and hidden cursor"),
    ("\x1b]0;title\x07prompt$ ", "prompt$ "),  # OSC ended by BEL
    ("\x1b]2;title\x1b\\prompt$ ", "prompt$ "),  # ... or by ST
    ("\x1b(Bcharset\x1b=keypad\x1b7saved", "charsetkeypadsaved"),
    ("bell\x07 nul\x00 bs\x08 del\x7f c1\x9b", "bell nul bs del c1"),
    ("tab\tkept\r\nline\n", "tab\tkept\r\nline\n"),
    ("cut off \x1b[", "cut off "), ("lone \x1b", "lone "),
    ("ünïcode ✓", "ünïcode ✓"),
])
def test_printable_drops_escape_sequences_and_control_characters(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_log_tail_is_printable_and_skips_lines_left_empty(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"booting\r\nWelcome\r\nroot@r1:/# \x1b[6n\r\n\x1b[2J\x1b[H\r\n\xff\r\n")
    assert log_tail(log, 2) == "root@r1:/# / \ufffd"
    assert log_tail(log, 9) == "booting / Welcome / root@r1:/# / \ufffd"
    assert log_tail(tmp_path / "missing.log") == ""


@pytest.mark.parametrize("code, text", [
    (0, "exited with code 0"), (1, "exited with code 1"),
    (-9, "was killed by signal 9 (SIGKILL)"),
    (-signal.SIGSEGV, "was killed by signal 11 (SIGSEGV)"),
    (-200, "was killed by signal 200"),  # no such signal: the number alone
])
def test_exit_status_text(code: int, text: str) -> None:
    assert exit_status_text(code) == text


def test_read_exit_status(tmp_path: Path) -> None:
    status = tmp_path / "exit-status"
    assert read_exit_status(status) is None  # no jail wrote one
    status.write_text("")
    assert read_exit_status(status) is None  # QEMU still runs
    status.write_text("-9\n")
    assert read_exit_status(status) == -9
    status.write_text("garbage")
    assert read_exit_status(status) is None
    status.unlink()
    status.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text("3\n")
    assert read_exit_status(status) is None  # a symlink QEMU's user planted is not followed


def test_the_jail_is_told_where_to_write_qemus_exit_status() -> None:
    from vmkit.machine import jailer

    argv = Jail(Path("/r"), 5, 6).command(["qemu"], [], status=Path("/vm/exit-status"))
    spec, qemu = jailer.parse(argv[argv.index("--root"):])
    assert spec["status"] == "/vm/exit-status" and qemu == ["qemu"]
    assert "--status" not in Jail(Path("/r"), 5, 6).command(["qemu"], [])


def test_the_jailer_writes_qemus_exit_status_and_dies_as_it_did(tmp_path: Path) -> None:
    """The jailer's waiting half, with a child that kills itself in place of jailed QEMU."""
    status = tmp_path / "exit-status"
    status.symlink_to(tmp_path / "target")  # planted by QEMU's user: replaced, not followed
    script = ("import os, sys\n"
              "from vmkit.machine import jailer\n"
              "jailer._libc = type('NoNamespaces', (), {'unshare': lambda self, flags: 0})()\n"
              "jailer._run_qemu = lambda spec, argv: os.kill(os.getpid(), 9)\n"
              "jailer.main(sys.argv[1:])\n")
    done = subprocess.run([sys.executable, "-c", script, "--root", "/r", "--uid", "5",
                           "--gid", "6", "--status", str(status), "--", "qemu"])
    assert done.returncode == -signal.SIGKILL
    assert status.read_text() == "-9\n" and not status.is_symlink()
    assert not (tmp_path / "target").exists()

"""The QEMU sandbox: seccomp always; as root, a user, PID and mount namespace of its own.

The checks look from where QEMU stands: its files through /proc/PID/root, and commands run
with nsenter inside its namespaces as its user.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from vmkit.machine import jail
from vmkit.paths import HomePaths

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="QEMU is jailed only under root")


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def as_qemu(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the namespaces of QEMU ``pid``, as its user."""
    user = pwd.getpwnam(jail.USER)
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-p", "-S", str(user.pw_uid),
                           "-G", str(user.pw_gid), "--", *argv],
                          capture_output=True, text=True, timeout=30)


def disk_of(home: Path, vm: str) -> Path:
    """The VM's top disk layer, from the QEMU command line vmkitd recorded."""
    argv = json.loads(HomePaths(home).vm(vm).launched.read_text())["argv"]
    return Path(argv[argv.index("-drive") + 1].split(",")[0].removeprefix("file="))


def test_qemu_runs_jailed_and_sees_only_its_own_vm(home, make_vm) -> None:
    mine, other = make_vm("jail1"), make_vm("jail2")
    pid = mine["pid"]
    st = status(pid)
    user = pwd.getpwnam(jail.USER)
    assert st["Uid"].split()[0] == str(user.pw_uid) and st["Gid"].split()[0] == str(user.pw_gid)
    assert st["Seccomp"] == "2"  # QEMU's -sandbox filter
    assert st["NSpid"].split()[-1] == "1"  # first process of a PID namespace of its own
    root = Path(f"/proc/{pid}/root")
    own_disk, other_disk = disk_of(home, "jail1"), disk_of(home, "jail2")
    paths = HomePaths(home)
    assert (root / own_disk.relative_to("/")).exists()
    for hidden in (other_disk, paths.db, paths.token, paths.vm("jail2").dir, paths.socket):
        assert not (root / hidden.relative_to("/")).exists(), hidden
    # As QEMU's user inside its namespaces: its own disk is readable, nothing else is there.
    assert as_qemu(pid, "head", "-c", "3", str(own_disk)).stdout == "QFI"  # qcow2 magic
    for target in (other_disk, paths.db):
        r = as_qemu(pid, "cat", str(target))
        assert r.returncode != 0 and "No such file" in r.stderr, r
    # Its /proc holds only itself (pid 1) and the command looking at it.
    r = as_qemu(pid, "ls", "/proc")
    assert len([p for p in r.stdout.split() if p.isdigit()]) == 2, r.stdout
    assert "jail1" in as_qemu(pid, "cat", "/proc/1/cmdline").stdout
    assert str(other["pid"]) not in r.stdout.split()
    # It cannot write to the system it was given.
    r = as_qemu(pid, "touch", "/usr/bin/planted")
    assert r.returncode != 0


def test_vm_files_are_private(home, make_vm) -> None:
    make_vm("jail3")
    vm_dir = HomePaths(home).vm("jail3").dir
    assert stat.S_IMODE(vm_dir.stat().st_mode) == 0o700
    for sock in ("qmp.sock", "agent.sock", "console.sock"):
        assert stat.S_IMODE((vm_dir / sock).stat().st_mode) == 0o600, sock  # as README says

"""'vmkit run' decided on the server: on a fresh home, with no image and no daemon, the SDK's
Client.run gets what the CLI gets, for a boot, a --fast VM and a fork from a template."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmkit

from ..conftest import DEB_CACHE, kill_qemus

pytestmark = pytest.mark.integration
SAME = ("image", "cpus", "memory", "network", "networks", "state", "disk", "ports")


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """A VMKIT_HOME with nothing in it but the test's package cache: no image, no daemon.
    (Short: QEMU's sockets in it must have paths under 108 bytes.)"""
    home = Path(tempfile.mkdtemp(prefix="vmkit-run-", dir="/tmp"))
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "debs").symlink_to(DEB_CACHE)
    yield home
    pid_file = home / "run" / "vmkitd.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):  # the client started it: it is this process's child to reap
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
    kill_qemus(home)
    shutil.rmtree(home, ignore_errors=True)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmkit.cli.main", *args], text=True,
                          capture_output=True, env=dict(os.environ, VMKIT_HOME=str(home)),
                          timeout=600)


def test_client_run_on_a_fresh_home_ends_as_the_cli_does(fresh_home: Path) -> None:
    messages: list[str] = []
    with vmkit.Client(home=fresh_home) as c:
        vm = c.run(network="restricted", on_progress=lambda op: messages.append(op.message))
        assert re.fullmatch(r"[a-z]+-[a-z]+", vm.name)  # generated, as the CLI's
        assert vm.state == "running"
        assert any("image tiny" in m for m in messages), messages  # built on demand
        assert c.exec(vm.name, ["hostname"]).stdout.strip() == vm.name.encode()

        done = _cli(fresh_home, "run", "-d", "-n", "by-cli", "--network", "restricted")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "by-cli"
        by_cli = c.get_vm("by-cli")
        assert {k: vm[k] for k in SAME} == {k: by_cli[k] for k in SAME}

        fast = c.run("tiny", "quick", fast=True, network="restricted")
        assert fast.state == "running"
        assert fast.forked_from and fast.forked_from.startswith("fast-tiny-")
        assert c.exec("quick", ["hostname"]).stdout.strip() == b"quick"

        c.create_template("base", vm.name)
        child = c.run(name="child", source="base", network="restricted")
        assert child.state == "running"  # forked from the template's snapshot of vm:
        assert child.forked_from and child.forked_from.startswith(f"{vm.name}@")
        assert c.exec("child", ["hostname"]).stdout.strip() == b"child"
        assert child.mac != vm.mac  # its own identity


def test_a_run_is_checked_before_it_starts_and_can_be_called_off(daemon: object,
                                                                 client: vmkit.Client) -> None:
    with pytest.raises(vmkit.InvalidInputError, match="drop --disk"):
        client.start_run(name="never", source="nothing", disk="2G")
    with pytest.raises(vmkit.NotFoundError, match="image"):
        client.start_run(image="no-such-image", name="never")
    with pytest.raises(vmkit.InvalidInputError, match="smaller than the image"):
        client.start_run(name="never", disk="1M")
    assert not any(v.name == "never" for v in client.list_vms())

    op = client.start_run(name="called-off", network="restricted")
    client.cancel_operation(op.id)
    with pytest.raises(vmkit.VmkitError, match="cancelled"):
        client.wait_operation(op.id, interval=0.1)
    assert not any(v.name == "called-off" for v in client.list_vms())
    assert not (Path(client.paths.root) / "vms" / "called-off").exists()

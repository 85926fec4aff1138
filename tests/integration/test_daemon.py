"""VMs outlive the daemon: kill -9 of vmkitd leaves them running; the next one re-attaches."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from .conftest import Daemon, clone_home, kill_qemus


@pytest.fixture
def own_daemon(daemon: Daemon):
    """A second daemon on a home of its own (sharing the images), free to be killed."""
    home = Path(tempfile.mkdtemp(prefix="vmkit-it-own-", dir="/tmp"))
    home.rmdir()
    clone_home(daemon.home, home)
    d = Daemon(home)
    d.start()
    yield d
    d.stop()
    kill_qemus(home)
    shutil.rmtree(home, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_kill9_daemon_keeps_vms_and_reattaches(own_daemon: Daemon) -> None:
    with own_daemon.client() as c:
        vm = c.create_vm("survivor", network="restricted")
        c.exec("survivor", ["sh", "-c", "echo before > /root/f"])
        paused = c.create_vm("sleeper", network="restricted")
        c.pause_vm("sleeper")
    own_daemon.kill9()
    assert _alive(vm["pid"]) and _alive(paused["pid"])

    own_daemon.start()
    with own_daemon.client() as c:
        states = {v["name"]: v["state"] for v in c.list_vms()}
        assert states == {"survivor": "running", "sleeper": "paused"}
        assert c.get_vm("survivor")["pid"] == vm["pid"]
        assert c.exec("survivor", ["cat", "/root/f"]).stdout == b"before\n"
        c.resume_vm("sleeper")
        assert c.exec("sleeper", ["true"]).exit_code == 0
        # The re-attached QEMU is watched like any other: a stop is seen and recorded.
        assert c.stop_vm("survivor")["state"] == "stopped"


def test_vm_that_died_while_daemon_was_down_is_crashed(own_daemon: Daemon) -> None:
    with own_daemon.client() as c:
        vm = c.create_vm("gone", network="restricted")
    own_daemon.kill9()
    os.kill(vm["pid"], signal.SIGKILL)
    own_daemon.start()
    with own_daemon.client() as c:
        got = c.get_vm("gone")
        assert got["state"] == "crashed"
        assert "exited while vmkitd was not running" in got["reason"]
        c.remove_vm("gone")
        assert not (own_daemon.home / "vms" / "gone").exists()

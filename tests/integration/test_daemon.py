"""VMs outlive the daemon: kill -9 of vmkitd leaves them running; the next one re-attaches."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import vmkit

from ..conftest import qemu_pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_kill9_daemon_keeps_vms_and_reattaches(own_daemon) -> None:
    d = own_daemon()
    with d.client() as c:
        vm = c.create_vm("survivor", network="restricted")
        c.exec("survivor", ["sh", "-c", "echo before > /root/f"])
        paused = c.create_vm("sleeper", network="restricted")
        c.pause_vm("sleeper")
    d.kill9()
    assert _alive(vm["pid"]) and _alive(paused["pid"])

    d.start()
    with d.client() as c:
        states = {v["name"]: v["state"] for v in c.list_vms()}
        assert states == {"survivor": "running", "sleeper": "paused"}
        assert c.get_vm("survivor")["pid"] == vm["pid"]
        assert c.exec("survivor", ["cat", "/root/f"]).stdout == b"before\n"
        c.resume_vm("sleeper")
        assert c.exec("sleeper", ["true"]).exit_code == 0
        # The re-attached QEMU is watched like any other: a stop is seen and recorded, and
        # how a crash happened is known though this vmkitd is not QEMU's parent (its jail is).
        assert c.stop_vm("survivor")["state"] == "stopped"
        os.kill(paused["pid"], signal.SIGKILL)
        got = _wait_state(c, "sleeper", "crashed")
        assert got["reason"].startswith("QEMU was killed by signal 9 (SIGKILL)")


def test_vm_that_died_while_daemon_was_down_is_crashed(own_daemon) -> None:
    d = own_daemon()
    with d.client() as c:
        vm = c.create_vm("gone", network="restricted")
    d.kill9()
    os.kill(vm["pid"], signal.SIGKILL)
    d.start()
    with d.client() as c:
        got = c.get_vm("gone")
        assert got["state"] == "crashed"
        assert got["reason"].startswith(f"QEMU (pid {vm['pid']}) was killed by signal 9 "
                                        "(SIGKILL) while vmkitd was not running")
        c.remove_vm("gone")
        assert not (d.home / "vms" / "gone").exists()


def test_create_interrupted_by_a_daemon_kill_leaves_nothing(own_daemon) -> None:
    d = own_daemon()
    with d.client() as c:
        c.create_vm("keep", network="restricted")
        c.stop_vm("keep")
        c.create_vm("again", network="restricted")
        c.stop_vm("again")
    layers = sorted((d.home / "disks").iterdir())
    failed: list[Exception] = []

    def create() -> None:
        with d.client() as c, pytest.raises(Exception) as e:
            c.create_vm("half", network="restricted")
        failed.append(e.value)

    creating = threading.Thread(target=create)
    creating.start()
    pid = None
    with d.client() as c:  # kill vmkitd while QEMU boots the new VM, held mid-boot
        while creating.is_alive() and not (
                pid := next((v["pid"] for v in c.list_vms() if v["name"] == "half"), None)):
            time.sleep(0.05)
        assert pid, failed
        os.kill(pid, signal.SIGSTOP)
        assert c.get_vm("half")["state"] == "starting"
    d.kill9()
    creating.join()
    assert failed  # its connection died with vmkitd
    assert any(b"-name half," in _cmdline(p) for p in qemu_pids(d.home))
    # What a killed vmkitd may also leave: a start that never got to run QEMU, and the
    # directory of a create that never got to record its VM.
    with sqlite3.connect(d.home / "state.db") as db:
        db.execute("UPDATE vms SET state = 'starting', pid = NULL WHERE name = 'again'")
    (d.home / "vms" / "stray").mkdir()
    (d.home / "vms" / "stray" / "qemu.log").write_text("left behind\n")

    d.start()
    with d.client() as c:
        vms = {v["name"]: v for v in c.list_vms()}
        assert sorted(vms) == ["again", "keep"]
        assert (vms["keep"]["state"], vms["keep"]["reason"]) == ("stopped", "")
        assert (vms["again"]["state"], vms["again"]["reason"]) == (
            "stopped", "its start was interrupted when vmkitd stopped")
        assert sorted(p.name for p in (d.home / "vms").iterdir()) == ["again", "keep"]
        assert sorted((d.home / "disks").iterdir()) == layers
        assert not any(b"-name half," in _cmdline(p) for p in qemu_pids(d.home))
        assert c.start_vm("again")["state"] == "running"  # its disk is whole


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _wait_state(c: vmkit.Client, name: str, state: str) -> dict:
    deadline = time.monotonic() + 30
    while (vm := c.get_vm(name))["state"] != state and time.monotonic() < deadline:
        time.sleep(0.1)
    return vm


def test_tcp_listener_needs_the_token(own_daemon) -> None:
    import httpx

    import vmkit

    from ..conftest import free_port

    port = free_port()
    d = own_daemon(args=("--listen", f"127.0.0.1:{port}"))
    token = (d.home / "run" / "token").read_text().strip()
    assert oct((d.home / "run" / "token").stat().st_mode & 0o777) == "0o600"
    assert oct((d.home / "run" / "vmkitd.sock").stat().st_mode & 0o777) == "0o600"
    url = f"http://127.0.0.1:{port}"
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": token}):
        r = httpx.get(f"{url}/v1/vms", headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    with vmkit.Client(url=url, token=token) as remote:
        assert remote.list_vms() == []
        assert remote.info()["home"] == str(d.home)
    with vmkit.Client(url=url, token="nope") as remote, pytest.raises(vmkit.UnauthorizedError):
        remote.list_vms()

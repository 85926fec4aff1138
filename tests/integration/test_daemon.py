"""VMs outlive the daemon: kill -9 of vmkitd leaves them running; the next one re-attaches."""

from __future__ import annotations

import os
import signal

import pytest


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
        # The re-attached QEMU is watched like any other: a stop is seen and recorded.
        assert c.stop_vm("survivor")["state"] == "stopped"


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
        assert "exited while vmkitd was not running" in got["reason"]
        c.remove_vm("gone")
        assert not (d.home / "vms" / "gone").exists()


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

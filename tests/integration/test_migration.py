"""Live migration between two vmkit hosts on loopback, checked from inside the guest."""

from __future__ import annotations

import time

import pytest

import vmkit

from ..conftest import Daemon, free_port
from .test_snapshots import COUNTER, count, out

# Appends a line a 20th of a second to a file on the guest's disk, flushed each time.
WRITER = ("setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i >> /root/log; sync; "
          "sleep 0.05; done' >/dev/null 2>&1 &")


@pytest.fixture
def hosts(own_daemon) -> tuple[Daemon, Daemon, str, str]:
    """A source and a destination vmkitd (listening on TCP), its URL and token."""
    port = free_port()
    source = own_daemon()
    destination = own_daemon(args=("--listen", f"127.0.0.1:{port}"))
    token = (destination.home / "run" / "token").read_text().strip()
    return source, destination, f"http://127.0.0.1:{port}", token


def test_the_guest_keeps_running_across_the_move(hosts) -> None:
    source, destination, url, token = hosts
    with source.client() as c:
        c.create_vm("mig1", network="restricted")
        c.exec("mig1", ["sh", "-c", COUNTER])
        c.exec("mig1", ["sh", "-c", WRITER])
        pid = out(c, "mig1", "cat", "/tmp/counter.pid")
        time.sleep(1)
        before = count(c, "mig1")
        done = c.wait_operation(c.migrate("mig1", url, token)["id"])
        assert "downtime" in done["message"]
        assert c.list_vms() == []  # the source's copy is gone
    with destination.client() as d:
        vm = d.get_vm("mig1")
        assert vm["state"] == "running" and vm["network"] == "restricted"
        after = count(d, "mig1")
        assert after >= before  # no reset: it went on from where it was
        time.sleep(0.5)
        assert count(d, "mig1") > after  # and goes on counting
        assert out(d, "mig1", "cat", "/tmp/counter.pid") == pid  # the same process
        # Lines written while the disk was being copied are all there, in order, no gap.
        lines = [int(x) for x in out(d, "mig1", "cat", "/root/log").split()]
        assert lines == list(range(1, len(lines) + 1)) and len(lines) > 20


def test_a_refused_migration_leaves_the_vm_running_here(hosts) -> None:
    source, destination, url, token = hosts
    with source.client() as c:
        c.create_vm("mig2", network="none")
        c.exec("mig2", ["sh", "-c", COUNTER])
        with pytest.raises(vmkit.VmkitError, match="token"):
            c.wait_operation(c.migrate("mig2", url, "wrong-token")["id"])
        with pytest.raises(vmkit.VmkitError, match="cannot reach the destination"):
            c.wait_operation(c.migrate("mig2", f"http://127.0.0.1:{free_port()}", token)["id"])
        with destination.client() as d:
            d.create_vm("mig2", network="none")  # the name is taken there
            with pytest.raises(vmkit.VmkitError, match="already exists"):
                c.wait_operation(c.migrate("mig2", url, token)["id"])
            assert [v["name"] for v in d.list_vms()] == ["mig2"]  # theirs, untouched
        first = count(c, "mig2")
        time.sleep(0.3)
        assert c.get_vm("mig2")["state"] == "running" and count(c, "mig2") > first


def test_the_destination_dying_mid_move_leaves_the_vm_running_here(hosts) -> None:
    source, destination, url, token = hosts
    with source.client() as c:
        c.create_vm("mig3", network="none", disk="2G")
        c.exec("mig3", ["sh", "-c", COUNTER])
        # Enough data on the disk that the copy takes a while.
        c.exec("mig3", ["sh", "-c", "dd if=/dev/urandom of=/root/big bs=1M count=200; sync"])
        op = c.migrate("mig3", url, token)
        deadline = time.monotonic() + 30
        while "copying" not in (now := c.operation(op["id"]))["message"]:
            assert time.monotonic() < deadline and now["state"] == "running", now
            time.sleep(0.02)
        destination.kill9()
        for pid in _qemu_pids(destination):
            import os
            import signal
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(vmkit.VmkitError):
            c.wait_operation(op["id"])
        assert c.get_vm("mig3")["state"] == "running"
        first = count(c, "mig3")
        time.sleep(0.3)
        assert count(c, "mig3") > first
        assert c.exec("mig3", ["ls", "/root/big"]).exit_code == 0


def test_cancel_leaves_the_vm_running_here(hosts) -> None:
    source, destination, url, token = hosts
    with source.client() as c:
        c.create_vm("mig4", network="none", disk="2G")
        c.exec("mig4", ["sh", "-c", "dd if=/dev/urandom of=/root/big bs=1M count=200; sync"])
        op = c.migrate("mig4", url, token)
        deadline = time.monotonic() + 30
        while "copying" not in (now := c.operation(op["id"]))["message"]:
            assert time.monotonic() < deadline and now["state"] == "running", now
            time.sleep(0.02)
        c.cancel_migration("mig4")
        with pytest.raises(vmkit.VmkitError, match="cancelled"):
            c.wait_operation(op["id"])
        assert c.get_vm("mig4")["state"] == "running"
        assert c.exec("mig4", ["true"]).exit_code == 0
    with destination.client() as d:
        assert d.list_vms() == []  # nothing left behind there
    assert not list((destination.home / "vms").iterdir())


def _qemu_pids(d: Daemon) -> list[int]:
    import os
    from pathlib import Path

    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and str(d.home).encode() in cmdline:
                pids.append(int(pid))
    return pids

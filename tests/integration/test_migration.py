"""Live migration between two vmkit hosts on loopback, checked from inside the guest."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmkit

from ..conftest import Daemon, clone_home, free_port, kill_qemus
from .test_snapshots import COUNTER, count, out

# Appends a line a 20th of a second to a file on the guest's disk, flushed each time.
WRITER = ("setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i >> /root/log; sync; "
          "sleep 0.05; done' >/dev/null 2>&1 &")


@pytest.fixture
def hosts(own_daemon) -> tuple[Daemon, Daemon, str, str]:
    """A source and a destination vmkitd (listening on TCP), its URL and token. The moved
    guest is watched for 2 s, not 30: test_migration_safety.py tests the watch itself."""
    port = free_port()
    source = own_daemon(VMKIT_MIGRATION_WATCH="2")
    destination = own_daemon(args=("--listen", f"127.0.0.1:{port}"))
    token = (destination.home / "run" / "token").read_text().strip()
    return source, destination, f"http://127.0.0.1:{port}", token


def _wait_for_copy(c: vmkit.Client, op: dict) -> None:
    """Until the migration is copying (the disk, first)."""
    deadline = time.monotonic() + 30
    while "copying" not in (now := c.operation(op["id"]))["message"]:
        assert time.monotonic() < deadline and now["state"] == "running", now
        time.sleep(0.02)


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
        _wait_for_copy(c, op)
        destination.kill9()
        kill_qemus(destination.home)
        with pytest.raises(vmkit.VmkitError):
            c.wait_operation(op["id"])
        assert c.get_vm("mig3")["state"] == "running"
        first = count(c, "mig3")
        time.sleep(0.3)
        assert count(c, "mig3") > first
        assert c.exec("mig3", ["ls", "/root/big"]).exit_code == 0
    destination.start("--listen", url.removeprefix("http://"))
    with destination.client() as d:  # the restarted destination drops the half-arrived VM
        assert d.list_vms() == []
    assert not list((destination.home / "vms").iterdir())


def test_cancel_leaves_the_vm_running_here(hosts) -> None:
    source, destination, url, token = hosts
    with source.client() as c:
        c.create_vm("mig4", network="none", disk="2G")
        c.exec("mig4", ["sh", "-c", "dd if=/dev/urandom of=/root/big bs=1M count=200; sync"])
        op = c.migrate("mig4", url, token)
        _wait_for_copy(c, op)
        c.cancel_migration("mig4")
        with pytest.raises(vmkit.VmkitError, match="cancelled"):
            c.wait_operation(op["id"])
        assert c.get_vm("mig4")["state"] == "running"
        assert c.exec("mig4", ["true"]).exit_code == 0
    with destination.client() as d:
        assert d.list_vms() == []  # nothing left behind there
    assert not list((destination.home / "vms").iterdir())


def test_the_destination_refuses_what_it_cannot_take(hosts) -> None:
    import httpx

    _, destination, url, token = hosts
    offer = {"spec": {"name": "far9", "image": "tiny", "cpus": 1, "memory_mib": 256,
                      "disk_bytes": None, "ports": [], "network": "none", "auto_remove": False},
             "mac": "52:54:00:00:00:09", "disk_bytes": 1 << 30, "disk_used": 1 << 20}
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}) as api:
        old = api.post("/v1/migrations", json={**offer, "qemu": "5.0.0"})
        assert old.status_code == 409 and "incompatible QEMU versions" in old.json()["message"]
        from vmkit.machine import qemu

        ours = qemu.current().version  # the QEMU the daemons run (VMKIT_QEMU, or the system's)
        full = api.post("/v1/migrations", json={**offer, "qemu": ours, "disk_used": 1 << 43})
        assert full.status_code == 507 and full.json()["error"] == "no_space"
        bad = api.post("/v1/migrations", json={**offer, "qemu": ours, "mac": "not-a-mac"})
        assert bad.status_code == 422
        assert api.post("/v1/migrations/far9/finish").status_code == 404
    with destination.client() as d:
        assert d.list_vms() == []
    assert not list((destination.home / "disks").iterdir())


def test_vmkit_migrate_on_the_command_line(hosts) -> None:
    source, destination, url, token = hosts
    assert source.cli("host", "add", "there", url, "--token", token).returncode == 0
    assert source.cli("run", "-d", "-n", "mig5", "--network", "none").returncode == 0
    r = source.cli("migrate", "mig5", "--to", "there")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"mig5\n" and b"downtime" in r.stderr
    assert source.cli("ls", "-q").stdout == b""
    assert source.cli("--host", "there", "exec", "mig5", "--", "hostname").stdout == b"mig5\n"
    r = source.cli("migrate", "mig5", "--to", "nowhere")
    assert r.returncode == 1 and b"no host named 'nowhere'" in r.stderr
    r = source.cli("migrate", "--cancel", "mig5")
    assert r.returncode == 1 and b"no VM named 'mig5'" in r.stderr


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair, 10.99.0.1 and 10.99.0.2: a real
    (virtual) network between two hosts, made for this test and removed after it."""
    tag = f"{os.getpid() % 100000}"
    a, b = f"vmkit-a{tag}", f"vmkit-b{tag}"
    steps = [["ip", "netns", "add", a], ["ip", "netns", "add", b],
             ["ip", "link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", "name",
              f"vb{tag}", "netns", b]]
    for ns, dev, ip in ((a, f"va{tag}", "10.99.0.1/24"), (b, f"vb{tag}", "10.99.0.2/24")):
        steps += [["ip", "-n", ns, "addr", "add", ip, "dev", dev],
                  ["ip", "-n", ns, "link", "set", dev, "up"],
                  ["ip", "-n", ns, "link", "set", "lo", "up"]]
    try:
        for step in steps:
            r = subprocess.run(step, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                pytest.skip(f"cannot make network namespaces here: {r.stderr.strip()}")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_migration_across_a_network_between_namespaces(daemon: Daemon, two_namespaces) -> None:
    ns_a, ns_b = two_namespaces
    homes, started = [], []
    try:
        for ns in (ns_a, ns_b):
            home = Path(tempfile.mkdtemp(prefix="vmkit-it-ns-", dir="/tmp"))
            home.rmdir()
            clone_home(daemon.home, home)
            homes.append(home)
            d = Daemon(home, netns=ns, VMKIT_MIGRATION_WATCH="2")
            started.append(d)
        source, destination = started
        source.start()
        destination.start("--listen", "10.99.0.2:8765")
        token = (destination.home / "run" / "token").read_text().strip()
        with source.client() as c:
            c.create_vm("netmig", network="none")
            c.exec("netmig", ["sh", "-c", COUNTER])
            before = count(c, "netmig")
            done = c.wait_operation(c.migrate("netmig", "http://10.99.0.2:8765", token)["id"])
            assert "downtime" in done["message"]
        with destination.client() as d:
            assert count(d, "netmig") >= before
            qemu = d.get_vm("netmig")["pid"]
            # Its QEMU runs in the destination's namespace: the VM really crossed the link.
            assert os.readlink(f"/proc/{qemu}/ns/net") == _netns_id(ns_b)
    finally:
        for d in started:
            d.stop()
        for home in homes:
            kill_qemus(home)
            shutil.rmtree(home, ignore_errors=True)


def _netns_id(name: str) -> str:
    return os.readlink(f"/proc/{_pid_in(name)}/ns/net")


def _pid_in(name: str) -> int:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0])


@pytest.fixture
def userfaultfd() -> Iterator[None]:
    """Post-copy needs userfaultfd; a jailed (unprivileged) QEMU may use it only when the
    host allows it. Allowed for the test, as it was before."""
    knob = Path("/proc/sys/vm/unprivileged_userfaultfd")
    before = knob.read_text() if knob.exists() else None
    try:
        if before is not None and os.geteuid() == 0:
            knob.write_text("1\n")
        yield
    finally:
        if before is not None and os.geteuid() == 0:
            knob.write_text(before)


def test_postcopy_moves_a_running_guest(hosts, userfaultfd) -> None:
    source, destination, url, token = hosts
    with source.client() as c:
        c.create_vm("mig7", network="none")
        c.exec("mig7", ["sh", "-c", COUNTER])
        pid = out(c, "mig7", "cat", "/tmp/counter.pid")
        time.sleep(0.5)
        before = count(c, "mig7")
        if os.geteuid() == 0:  # a jailed destination refuses while the host forbids it
            Path("/proc/sys/vm/unprivileged_userfaultfd").write_text("0\n")
            with pytest.raises(vmkit.VmkitError, match="vm.unprivileged_userfaultfd=1"):
                c.wait_operation(c.migrate("mig7", url, token, postcopy=True)["id"])
            Path("/proc/sys/vm/unprivileged_userfaultfd").write_text("1\n")
            assert count(c, "mig7") > before  # still running here
        done = c.wait_operation(c.migrate("mig7", url, token, postcopy=True)["id"])
        assert "downtime" in done["message"]
    with destination.client() as d:
        assert out(d, "mig7", "cat", "/tmp/counter.pid") == pid
        after = count(d, "mig7")
        assert after >= before
        time.sleep(0.5)
        assert count(d, "mig7") > after


def test_an_abandoned_arrival_is_removed_and_the_source_recovers(own_daemon) -> None:
    port = free_port()
    source = own_daemon(VMKIT_MIGRATION_WATCH="2")
    destination = own_daemon(args=("--listen", f"127.0.0.1:{port}"),
                             VMKIT_ARRIVAL_IDLE_TIMEOUT="3")
    token = (destination.home / "run" / "token").read_text().strip()
    with source.client() as c:
        c.create_vm("mig8", network="none", disk="2G")
        c.exec("mig8", ["sh", "-c", "dd if=/dev/urandom of=/root/big bs=1M count=200; sync"])
        op = c.migrate("mig8", f"http://127.0.0.1:{port}", token)
        _wait_for_copy(c, op)
    source.kill9()  # the source's daemon dies mid-move; its QEMU (and the guest) live on
    with destination.client() as d:
        deadline = time.monotonic() + 60
        while d.list_vms():  # the destination gives up once nothing moves
            assert time.monotonic() < deadline, d.list_vms()
            time.sleep(0.5)
    assert not list((destination.home / "vms").iterdir())
    source.start()
    with source.client() as c:
        assert c.get_vm("mig8")["state"] == "running"
        assert c.exec("mig8", ["ls", "/root/big"]).exit_code == 0
    # The half-done migration is gone from its QEMU: it can migrate again.
    with source.client() as c:
        c.wait_operation(c.migrate("mig8", f"http://127.0.0.1:{port}", token)["id"])
    with destination.client() as d:
        assert d.get_vm("mig8")["state"] == "running"

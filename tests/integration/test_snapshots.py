"""Snapshots, restores, forks and templates, checked from inside real guests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import vmkit

from ..conftest import Daemon, clone_home, free_port, kill_qemus

# A process in the guest that counts ten times a second into /tmp/count (tmpfs: guest RAM).
COUNTER = "setsid sh -c 'echo $$ > /tmp/counter.pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' " \
          ">/dev/null 2>&1 &"
# The guest's wall clock with microseconds (busybox date has only seconds).
GUEST_TIME = ["perl", "-e", 'my $t = "\\0" x 16; syscall(96, $t, 0) == 0 or die; '
                            'my ($s, $u) = unpack("q2", $t); printf("%d.%06d", $s, $u)']


def count(client: vmkit.Client, vm: str) -> int:
    return int(client.exec(vm, ["cat", "/tmp/count"]).stdout)


def out(client: vmkit.Client, vm: str, *argv: str) -> str:
    r = client.exec(vm, list(argv))
    assert r.exit_code == 0, r.stderr
    return r.stdout.decode().strip()


@pytest.fixture
def vms(client: vmkit.Client) -> Iterator[list[str]]:
    """Names of VMs and templates ('template:NAME') the test made; removed newest first, so
    forks go before the VMs and templates they depend on."""
    made: list[str] = []
    yield made
    for name in reversed(made):
        try:
            if name.startswith("template:"):
                client.remove_template(name.removeprefix("template:"))
            else:
                client.remove_vm(name, force=True)
        except vmkit.NotFoundError:
            pass


def test_restore_brings_back_memory_and_disk(client: vmkit.Client, make_vm) -> None:
    make_vm("tt1")
    client.exec("tt1", ["sh", "-c", COUNTER])
    time.sleep(0.5)
    pid = out(client, "tt1", "cat", "/tmp/counter.pid")
    before = count(client, "tt1")
    snap = client.create_snapshot("tt1", "s1")
    after = count(client, "tt1")
    assert (snap["name"], snap["memory"], snap["parent"], snap["current"]) == ("s1", True, None, True)
    client.exec("tt1", ["sh", "-c", "echo later > /root/later; sync"])
    time.sleep(3)
    later = count(client, "tt1")
    assert later > after + 10

    vm = client.restore_snapshot("tt1", "s1")
    assert vm["state"] == "running" and vm["snapshot"] == "tt1@s1"
    restored = count(client, "tt1")
    # The counter went back to where it was at the snapshot and goes on from there.
    assert before <= restored < later
    time.sleep(1)
    assert count(client, "tt1") > restored
    assert out(client, "tt1", "cat", "/tmp/counter.pid") == pid  # the same process, continued
    assert client.exec("tt1", ["kill", "-0", pid]).exit_code == 0
    assert client.exec("tt1", ["cat", "/root/later"]).exit_code != 0  # written after: gone


def test_snapshots_form_a_tree_and_branch(client: vmkit.Client, make_vm) -> None:
    make_vm("tree1")
    client.exec("tree1", ["sh", "-c", "echo 1 > /root/v; sync"])
    client.create_snapshot("tree1", "s1")
    client.exec("tree1", ["sh", "-c", "echo 2 > /root/v; sync"])
    client.create_snapshot("tree1", "s2")
    client.restore_snapshot("tree1", "s1")
    assert out(client, "tree1", "cat", "/root/v") == "1"
    client.exec("tree1", ["sh", "-c", "echo 3 > /root/v; sync"])
    auto = client.create_snapshot("tree1")  # a default name
    snaps = {s["name"]: s for s in client.list_snapshots("tree1")}
    assert auto["name"] == "snap1"
    assert (snaps["s2"]["parent"], snaps["snap1"]["parent"]) == ("s1", "s1")  # two branches
    assert [n for n, s in snaps.items() if s["current"]] == ["snap1"]
    client.restore_snapshot("tree1", "s2")
    assert out(client, "tree1", "cat", "/root/v") == "2"
    client.remove_snapshot("tree1", "s1")  # its children move up to its parent
    snaps = {s["name"]: s for s in client.list_snapshots("tree1")}
    assert set(snaps) == {"s2", "snap1"} and snaps["s2"]["parent"] is None
    client.restore_snapshot("tree1", "snap1")  # its disk layer outlived s1 as needed
    assert out(client, "tree1", "cat", "/root/v") == "3"


def test_disk_only_snapshots_of_stopped_and_running_vms(client: vmkit.Client, make_vm) -> None:
    make_vm("disk1")
    client.exec("disk1", ["sh", "-c", "echo a > /root/v; sync"])
    live = client.create_snapshot("disk1", "live", memory=False)
    assert live["memory"] is False
    client.stop_vm("disk1")
    client.start_vm("disk1")
    client.exec("disk1", ["sh", "-c", "echo b > /root/v; sync"])
    client.stop_vm("disk1")
    stopped = client.create_snapshot("disk1", "cold")
    assert stopped["memory"] is False  # a stopped VM has no memory to save
    assert client.restore_snapshot("disk1", "live")["state"] == "stopped"  # stays stopped
    client.start_vm("disk1")
    assert out(client, "disk1", "cat", "/root/v") == "a"
    assert client.restore_snapshot("disk1", "cold")["state"] == "running"  # rebooted
    assert out(client, "disk1", "cat", "/root/v") == "b"
    with pytest.raises(vmkit.InvalidInputError, match="holds no memory"):
        client.fork("disk1@cold", "disk1-fork")


def test_forks_run_side_by_side_each_with_its_own_identity(client: vmkit.Client, make_vm,
                                                            vms: list[str]) -> None:
    make_vm("src1")
    client.exec("src1", ["sh", "-c", COUNTER])
    time.sleep(0.5)
    port = free_port()
    forks = []
    # The first fork snapshots the running source; the second forks that same snapshot.
    for name, source, ports in (("fork-a", "src1", [f"{port}:8080"]),
                                ("fork-b", "src1@fork1", [])):
        vms.append(name)
        forks.append(client.fork(source, name, ports=ports))
    assert all(f["state"] == "running" and f["forked_from"] == "src1@fork1" for f in forks)
    ids = {}
    for f in forks:
        name = f["name"]
        assert out(client, name, "hostname") == name
        assert out(client, name, "cat", "/sys/class/net/eth0/address") == f["mac"]
        host_before = time.time()
        guest = float(out(client, name, *GUEST_TIME))
        assert host_before - 1 <= guest <= time.time() + 1  # the clock was set, not stale
        ids[name] = (out(client, name, "cat", "/etc/machine-id"),
                     out(client, name, "sh", "-c", "head -c16 /dev/urandom | od -x"), f["mac"])
        assert count(client, name) > 0  # the source's counter runs on in each fork
    src_id = out(client, "src1", "cat", "/etc/machine-id")
    (id_a, rand_a, mac_a), (id_b, rand_b, mac_b) = ids.values()
    assert len({id_a, id_b, src_id}) == 3 and rand_a != rand_b and mac_a != mac_b
    # All three run at once, and the fork's port forward reaches a server in it.
    assert [client.get_vm(n)["state"] for n in ("src1", "fork-a", "fork-b")] == ["running"] * 3
    client.exec("fork-a", ["sh", "-c", "mkdir -p /www && echo from-fork-a > /www/i && "
                                       "httpd -p 8080 -h /www"])
    deadline = time.monotonic() + 20
    while True:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/i", timeout=2).text == "from-fork-a\n"
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    # The source cannot go while forks depend on its snapshot, nor can that snapshot.
    with pytest.raises(vmkit.ConflictError, match="fork-a"):
        client.remove_vm("src1", force=True)
    with pytest.raises(vmkit.ConflictError, match="fork-b"):
        client.remove_snapshot("src1", "fork1")
    # Restoring the source is safe for its forks: snapshot files never change.
    client.restore_snapshot("src1", "fork1")
    assert out(client, "fork-a", "hostname") == "fork-a"


def test_templates_and_run_fast(client: vmkit.Client, daemon, make_vm, vms: list[str]) -> None:
    make_vm("tpl-src")
    client.exec("tpl-src", ["sh", "-c", "echo from-template > /root/mark; sync"])
    vms.append("template:tpl1")
    t = client.create_template("tpl1", "tpl-src")
    assert (t["name"], t["source"], t["image"]) == ("tpl1", "tpl-src@fork1", "tiny")
    vms.append("tpl-f1")
    f = client.fork("tpl1", "tpl-f1")
    assert f["forked_from"] == "tpl-src@fork1"
    assert out(client, "tpl-f1", "cat", "/root/mark") == "from-template"
    with pytest.raises(vmkit.ConflictError, match="template tpl1"):
        client.remove_vm("tpl-src", force=True)

    vms.append("quick1")
    r = daemon.cli("run", "-d", "--fast", "-n", "quick1", "--network", "restricted")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "quick1"
    assert out(client, "quick1", "hostname") == "quick1"
    templates = {t["name"]: t for t in client.list_templates()}
    assert templates["fast-tiny-1c256m"]["forks"] == ["quick1"]
    assert templates["fast-tiny-1c256m"]["source"] is None  # its builder VM is gone
    with pytest.raises(vmkit.ConflictError, match="quick1"):
        client.remove_template("fast-tiny-1c256m")
    client.remove_vm("quick1", force=True)
    client.remove_template("fast-tiny-1c256m")


def _answer(port: int) -> str:
    """What the guest server behind host port ``port`` answers (it may be starting still)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/i", timeout=2).text.strip()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _serve_hostname(client: vmkit.Client, vm: str) -> None:
    """A web server on guest port 22 that answers with the guest's hostname (started once,
    in the source: its forks inherit it running)."""
    r = client.exec(vm, ["sh", "-c", "mkdir -p /www && hostname > /www/i && sync && "
                                     "{ pidof httpd >/dev/null || httpd -p 22 -h /www; }"])
    assert r.exit_code == 0, r.stderr


def test_forks_of_a_vm_with_port_forwards(client: vmkit.Client, daemon, make_vm,
                                          vms: list[str]) -> None:
    src_port, fork_port, tpl_port = free_port(), free_port(), free_port()
    make_vm("fwd-src", ports=[f"{src_port}:22"])
    _serve_hostname(client, "fwd-src")
    assert _answer(src_port) == "fwd-src"

    def leftovers() -> tuple[list[str], list[str], bool]:
        return ([s["name"] for s in client.list_snapshots("fwd-src")],
                [v["name"] for v in client.list_vms() if v["name"].startswith("fwd-bad")],
                (daemon.home / "vms" / "fwd-bad").exists())

    # The source's own host port is taken: refused before the source is snapshotted.
    with pytest.raises(vmkit.ConflictError,
                       match=f"host port 127.0.0.1:{src_port}/tcp is not available"):
        client.fork("fwd-src", "fwd-bad", ports=[f"{src_port}:22"])
    # A fork that fails after snapshotting its source removes that snapshot.
    with pytest.raises(vmkit.InvalidInputError, match="network card"):
        client.fork("fwd-src", "fwd-bad", network="none")
    assert leftovers() == ([], [], False)

    # The fork's prepare QEMU ran beside the source, which holds its forward; the fork has
    # only the forward it asked for.
    vms.append("fwd-fork")
    fork = client.fork("fwd-src", "fwd-fork", ports=[f"{fork_port}:22"])
    assert [p["host_port"] for p in fork["ports"]] == [fork_port]
    # The snapshot is kept once a fork uses it, and a failed fork of it leaves it be.
    with pytest.raises(vmkit.ConflictError,
                       match=f"host port 127.0.0.1:{fork_port}/tcp is not available"):
        client.fork("fwd-src@fork1", "fwd-bad", ports=[f"{fork_port}:22"])
    with pytest.raises(vmkit.InvalidInputError, match="network card"):
        client.fork("fwd-src@fork1", "fwd-bad", network="none")
    assert leftovers() == (["fork1"], [], False)

    # A template of the running source, and 'run --from' it with a forward of its own.
    vms.append("template:fwd-tpl")
    assert client.create_template("fwd-tpl", "fwd-src")["source"] == "fwd-src@fork2"
    vms.append("fwd-run")
    r = daemon.cli("run", "-d", "--from", "fwd-tpl", "-n", "fwd-run", "-p", f"{tpl_port}:22",
                   "--network", "restricted")
    assert r.returncode == 0, r.stderr
    assert [p["host_port"] for p in client.get_vm("fwd-run")["ports"]] == [tpl_port]

    # Each host port reaches its own guest: the forks' servers are the source's, forked.
    for vm in ("fwd-fork", "fwd-run"):
        _serve_hostname(client, vm)
    assert [_answer(p) for p in (src_port, fork_port, tpl_port)] == \
        ["fwd-src", "fwd-fork", "fwd-run"]


def test_a_vm_still_booting_cannot_be_snapshotted(client: vmkit.Client, make_vm) -> None:
    booting = threading.Thread(target=make_vm, args=("early1",), daemon=True)
    booting.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.get_vm("early1")["state"] == "starting":
                break
        except vmkit.NotFoundError:
            pass
        assert time.monotonic() < deadline, "never saw the VM starting"
        time.sleep(0.02)
    with pytest.raises(vmkit.InvalidStateError, match="early1 is starting"):
        client.create_snapshot("early1", "too-soon")
    booting.join(60)
    assert client.list_snapshots("early1") == []


def test_snapshots_survive_a_daemon_restart(own_daemon) -> None:
    d = own_daemon()
    with d.client() as c:
        c.create_vm("keep1", network="none")
        c.exec("keep1", ["sh", "-c", "echo 1 > /root/v; sync"])
        c.create_snapshot("keep1", "s1")
        c.exec("keep1", ["sh", "-c", "echo 2 > /root/v; sync"])
    d.kill9()
    d.start()
    with d.client() as c:
        assert [s["name"] for s in c.list_snapshots("keep1")] == ["s1"]
        assert c.get_vm("keep1")["snapshot"] == "keep1@s1"
        c.restore_snapshot("keep1", "s1")
        assert c.exec("keep1", ["cat", "/root/v"]).stdout == b"1\n"


def _snapshot_in_background(c: vmkit.Client, vm: str, name: str) -> dict:
    result: dict = {}

    def run() -> None:
        try:
            result["snapshot"] = c.create_snapshot(vm, name)
        except Exception as e:  # noqa: BLE001 - the test inspects what happened
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def _wait_for_save(d, timeout: float = 30) -> None:
    """Until a save has written something: its temporary directory holds a state file."""
    deadline = time.monotonic() + timeout
    while not any(p.stat().st_size > 0 for p in (d.home / "snapshots").glob("*.tmp/state")):
        assert time.monotonic() < deadline, "the save never started"
        time.sleep(0.05)


def test_kill9_of_the_daemon_mid_save(own_daemon) -> None:
    # Saves slowed to 16 MB/s so that the kill lands in the middle of one.
    d = own_daemon(VMKIT_SAVE_BANDWIDTH=str(16 << 20))
    with d.client() as c:
        c.create_vm("mid1", network="none")
        c.exec("mid1", ["sh", "-c", COUNTER])
        c.create_snapshot("mid1", "good")
        pending = _snapshot_in_background(d.client(), "mid1", "bad")
        _wait_for_save(d)
        d.kill9()
        pending["thread"].join(30)
    d.start()
    with d.client() as c:
        assert [s["name"] for s in c.list_snapshots("mid1")] == ["good"]
        assert c.get_vm("mid1")["state"] == "running"  # the new daemon resumed the guest
        first = int(c.exec("mid1", ["cat", "/tmp/count"]).stdout)
        time.sleep(0.5)
        assert int(c.exec("mid1", ["cat", "/tmp/count"]).stdout) > first
        assert not list((d.home / "snapshots").glob("*.tmp"))  # no half snapshot left
        c.restore_snapshot("mid1", "good")
        assert c.exec("mid1", ["true"]).exit_code == 0


def test_kill9_of_qemu_mid_save(own_daemon) -> None:
    import os
    import signal

    d = own_daemon(VMKIT_SAVE_BANDWIDTH=str(16 << 20))
    with d.client() as c:
        c.create_vm("mid2", network="none")
        c.create_snapshot("mid2", "good")
        pid = c.get_vm("mid2")["pid"]
        pending = _snapshot_in_background(d.client(), "mid2", "bad")
        _wait_for_save(d)
        os.kill(pid, signal.SIGKILL)
        pending["thread"].join(30)
        assert isinstance(pending.get("error"), vmkit.VmkitError)
        assert [s["name"] for s in c.list_snapshots("mid2")] == ["good"]
        assert c.get_vm("mid2")["state"] in ("stopped", "crashed")
        assert not list((d.home / "snapshots").glob("*.tmp"))
        assert c.start_vm("mid2")["state"] == "running"  # its disk is whole
        c.restore_snapshot("mid2", "good")
        assert c.exec("mid2", ["true"]).exit_code == 0


def test_a_full_disk_fails_the_save_and_loses_nothing(daemon: Daemon) -> None:
    mnt = Path(tempfile.mkdtemp(prefix="vmkit-full-", dir="/tmp"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs",
                              str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    home = mnt / "home"  # 48 MiB: room for a VM's disk, not for its 256 MiB memory state
    try:
        clone_home(daemon.home, home)
        d = Daemon(home)
        d.start()
        try:
            with d.client() as c:
                c.create_vm("full1", network="none")
                c.create_snapshot("full1", "small", memory=False)
                with pytest.raises(vmkit.NoSpaceError, match="is full"):
                    c.create_snapshot("full1", "big")
                assert c.get_vm("full1")["state"] == "running"
                assert c.exec("full1", ["true"]).exit_code == 0
                assert [s["name"] for s in c.list_snapshots("full1")] == ["small"]
                assert len(list((home / "snapshots").iterdir())) == 1
                with pytest.raises(vmkit.NoSpaceError):  # a fork needs room for the RAM file
                    c.fork("full1", "full2")
                assert [v["name"] for v in c.list_vms()] == ["full1"]
        finally:
            d.stop()
            kill_qemus(home)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)

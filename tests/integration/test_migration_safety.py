"""Moves that must never lose a VM, with real guests: a guest whose kernel fails at the
destination comes back at the source where it left off; the memory digest that proves a move
whole sees any change; a busy guest (2 vCPUs, memory, processes and page cache churning) moved
back and forth, where every move completes with the guest intact or is rolled back with it
intact. Run on each QEMU the CI has (VMKIT_QEMU)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

import vmkit
from vmkit.machine.kernel_log import failure
from vmkit.machine import qemu
from vmkit.machine.memory import digest

from ..conftest import Daemon, free_port, kill_qemus
from .test_snapshots import COUNTER, GUEST_TIME, count, out

pytestmark = pytest.mark.integration

# Memory rewritten, processes created and files read in loops, on both vCPUs.
WORKLOAD = ("setsid sh -c 'while :; do dd if=/dev/zero of=/tmp/dirty bs=1M count=48 "
            "conv=notrunc 2>/dev/null; done' >/dev/null 2>&1 & echo $! > /tmp/w1; "
            "setsid sh -c 'while :; do ls -R /usr >/dev/null 2>&1; echo x | cat >/dev/null; "
            "done' >/dev/null 2>&1 & echo $! > /tmp/w2")
MOVES = 10


@pytest.fixture
def two_hosts(own_daemon) -> list[tuple[Daemon, str, str]]:
    """Two vmkitd on this machine, each listening on loopback: (daemon, url, token)."""
    hosts = []
    for _ in range(2):
        port = free_port()
        d = own_daemon(args=("--listen", f"127.0.0.1:{port}"))
        hosts.append((d, f"http://127.0.0.1:{port}", (d.home / "run/token").read_text().strip()))
    return hosts


def _wait_until_watched(c: vmkit.Client, op: dict) -> None:
    """Until the guest runs at the destination, under its watch."""
    deadline = time.monotonic() + 120
    while "watching" not in (now := c.operation(op["id"]))["message"]:
        assert now["state"] == "running" and time.monotonic() < deadline, now
        time.sleep(0.05)


def test_a_guest_that_fails_at_the_destination_resumes_here(two_hosts) -> None:
    (a, _, _), (b, url, token) = two_hosts
    with a.client() as c:
        c.create_vm("fail1", network="none")
        c.exec("fail1", ["sh", "-c", COUNTER])
        pid = out(c, "fail1", "cat", "/tmp/counter.pid")
        before = count(c, "fail1")
        op = c.migrate("fail1", url, token, watch=120)
        _wait_until_watched(c, op)
        # The guest now runs at the destination: crash its kernel from its own console there.
        with socket.socket(socket.AF_UNIX) as console:
            console.connect(str(b.home / "vms" / "fail1" / "console.sock"))
            console.sendall(b"\necho c > /proc/sysrq-trigger\n")
            with pytest.raises(vmkit.VmkitError) as failed:
                c.wait_operation(op["id"])
        assert "after the switch" in failed.value.message
        assert "sysrq triggered crash" in failed.value.message, failed.value.message
        # Back here, from where it left off: the same process, counting on.
        assert c.get_vm("fail1")["state"] == "running"
        assert out(c, "fail1", "cat", "/tmp/counter.pid") == pid
        resumed = count(c, "fail1")
        assert resumed >= before
        time.sleep(0.5)
        assert count(c, "fail1") > resumed
        # Its clock was set when it resumed: it does not lag by the time it stood still.
        assert abs(float(out(c, "fail1", *GUEST_TIME)) - time.time()) < 3
    with b.client() as d:
        assert d.list_vms() == []
    assert not (b.home / "vms" / "fail1").exists()


def _names(d: Daemon) -> set[str]:
    with d.client() as c:
        return {vm["name"] for vm in c.list_vms()}


def test_a_move_called_off_during_the_watch_runs_only_at_the_source(two_hosts) -> None:
    import httpx

    (a, _, _), (b, url, token) = two_hosts
    with a.client() as c:
        c.create_vm("off1", network="none")
        c.exec("off1", ["sh", "-c", COUNTER])
        pid = out(c, "off1", "cat", "/tmp/counter.pid")
        op = c.migrate("off1", url, token, watch=120)
        _wait_until_watched(c, op)
        # What a source that gives up sends: the destination's watch ends and its copy goes
        # before the call returns, and only then may the source resume.
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}) as api:
            assert api.delete("/v1/migrations/off1", timeout=60).status_code == 204
        with b.client() as d:
            assert d.list_vms() == []
        with pytest.raises(vmkit.VmkitError, match="called the move off"):
            c.wait_operation(op["id"])
        assert c.get_vm("off1")["state"] == "running"
        assert out(c, "off1", "cat", "/tmp/counter.pid") == pid
        before = count(c, "off1")
        time.sleep(0.5)
        assert count(c, "off1") > before


def test_a_destination_that_has_built_nothing_gets_the_image(own_daemon) -> None:
    source, port = own_daemon(), free_port()
    home = Path(tempfile.mkdtemp(prefix="vmkit-it-fresh-", dir="/tmp"))
    fresh = Daemon(home)
    try:
        fresh.start("--listen", f"127.0.0.1:{port}")
        token = (home / "run" / "token").read_text().strip()
        with source.client() as c:
            c.create_vm("fresh1", network="none")
            c.exec("fresh1", ["sh", "-c", "echo kept > /root/note; sync"])
            [image] = c.list_images()
            c.wait_operation(c.migrate("fresh1", f"http://127.0.0.1:{port}", token,
                                       watch=2)["id"])
        with fresh.client() as d:
            # The image came along, whole (its digest is checked on arrival), and the KVM
            # probe booted its kernel: nothing was built here.
            [there] = d.list_images()
            assert (there["name"], there["digest"]) == (image["name"], image["digest"])
            assert d.info()["accel"] == "tcg"
            assert out(d, "fresh1", "cat", "/root/note") == "kept"
            d.stop_vm("fresh1")
            d.start_vm("fresh1")  # and it boots from that image there
            assert out(d, "fresh1", "cat", "/root/note") == "kept"
            d.remove_vm("fresh1", force=True)
    finally:
        fresh.stop()
        kill_qemus(home)
        shutil.rmtree(home, ignore_errors=True)


class _Qemu:
    """A plain QEMU, as far as memory.digest needs one: its QMP client and execute()."""

    def __init__(self, qmp: QMPClient) -> None:
        self.qmp = qmp

    async def execute(self, cmd: str, args: dict | None = None) -> object:
        return await self.qmp.execute(cmd, args)


def test_the_memory_digest_sees_any_change(daemon: Daemon) -> None:
    image = next((daemon.home / "images").iterdir())
    q = qemu.current()
    with tempfile.TemporaryDirectory(prefix="digest-", dir="/tmp") as tmp:
        disk, qmp_path = Path(tmp) / "disk.qcow2", Path(tmp) / "qmp.sock"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                        str(image / "rootfs.raw"), "-F", "raw", str(disk)], check=True)
        argv = [q.binary, *(["-L", q.datadir] if q.datadir else []),
                "-machine", "microvm,acpi=on,isa-serial=on", "-accel", "tcg", "-cpu", "max",
                "-m", "128M", "-nodefaults", "-display", "none", "-no-reboot",
                "-kernel", str(image / "vmlinux"), "-initrd", str(image / "initrd.cpio"),
                "-append", "console=ttyS0 root=/dev/vda rw quiet panic=-1",
                "-drive", f"file={disk},if=none,id=d0,format=qcow2",
                "-device", "virtio-blk-device,drive=d0", "-serial", "null",
                "-qmp", f"unix:{qmp_path},server=on,wait=off"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(_digests_while_paused_and_running(qmp_path))
        finally:
            proc.kill()
            proc.wait()


async def _digests_while_paused_and_running(qmp_path: Path) -> None:
    client = QMPClient("digest-test")
    for _ in range(500):
        try:
            await client.connect(str(qmp_path))
            break
        except Exception:  # noqa: BLE001 - not listening yet
            await asyncio.sleep(0.01)
    machine = _Qemu(client)
    await asyncio.sleep(2)  # the guest boots and runs
    await client.execute("stop")
    first = await digest(machine)  # type: ignore[arg-type]
    assert await digest(machine) == first  # paused: the same guest, the same digest
    await client.execute("cont")
    await asyncio.sleep(1)
    await client.execute("stop")
    assert await digest(machine) != first  # it ran for a second: its memory changed
    await client.disconnect()


def test_a_busy_guest_moves_back_and_forth(two_hosts) -> None:
    hosts = two_hosts
    with hosts[0][0].client() as c:
        c.create_vm("busy", cpus=2, memory="256M", network="none")
        c.exec("busy", ["sh", "-c", WORKLOAD])
        workers = [out(c, "busy", "cat", f"/tmp/w{i}") for i in (1, 2)]
    here, outcomes = 0, {"completed": 0, "rolled back": 0}
    which = f"QEMU {qemu.current().version}"
    for move in range(MOVES):
        (src, _, _), (_, url, token) = hosts[here], hosts[1 - here]
        with src.client() as c:
            try:
                done = c.wait_operation(c.migrate("busy", url, token, watch=5)["id"])
                outcomes["completed"] += 1
                here = 1 - here
                print(f"move {move + 1}: {done['message']}")
            except vmkit.VmkitError as e:
                outcomes["rolled back"] += 1
                print(f"move {move + 1}: rolled back: {e.message}")
        # Wherever it is, it is there once, whole: its workload runs and its kernel is clean.
        holders = [h for h, _, _ in hosts if "busy" in _names(h)]
        assert holders == [hosts[here][0]], (move, holders)
        with hosts[here][0].client() as c:
            assert c.get_vm("busy")["state"] == "running"
            dmesg = out(c, "busy", "dmesg")
            assert failure(dmesg) is None, dmesg[-2000:]
            for pid in workers:
                assert c.exec("busy", ["kill", "-0", pid]).exit_code == 0, (move, pid)
    print(f"{which}: {MOVES} moves of a busy guest: {outcomes['completed']} completed, "
          f"{outcomes['rolled back']} rolled back, 0 lost")
    assert sum(outcomes.values()) == MOVES

"""Live migration between two vmkitd on one machine: each QEMU in cgroups of its own, an
arrival whose QEMU dies removed at once, and port forwards the VM gets at the destination."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

import vmkit
from vmkit.machine.limits import Limits, group_name, memory_cap

from ..conftest import free_port
from .test_migration import _wait_for_copy, hosts  # noqa: F401 (hosts: a fixture)
from .test_network import _get
from .test_snapshots import COUNTER, count, out

# The guest holds this much memory (not zeros: every page crosses and is allocated there),
# in a process that stays when the command returns its pid.
MEMORY, HELD = 1536, 1200
HOG = ["perl", "-e", f'push @a, "v" x 1048576 for 1 .. {HELD}; if ($p = fork) {{ print $p; '
                     'exit 0 } close STDIN; open STDOUT, ">/dev/null"; '
                     'open STDERR, ">/dev/null"; sleep']


def _cgroups(pid: int) -> set[str]:
    """The process's vmkit cgroups, as /proc/PID/cgroup lists them."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {line.split(":", 1)[1] for line in lines if "/vmkit/" in line}


def _rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmRSS:")), 0) >> 10  # none: it is exiting


def test_both_qemus_of_a_move_on_one_host_have_cgroups_of_their_own(hosts) -> None:
    source, destination, url, token = hosts
    limits = Limits(source.home)
    if not limits.enforced:
        pytest.skip(f"cgroups not usable here: {limits.reason}")
    with source.client() as c:
        c.create_vm("same1", network="none", memory=f"{MEMORY}M")
        hog = out(c, "same1", *HOG)
        src = c.get_vm("same1")["pid"]
        op = c.migrate("same1", url, token)
        apart, peak = [], 0
        with destination.client() as d:
            while c.operation(op["id"])["state"] == "running":
                time.sleep(0.05)
                try:  # its pid is recorded once it is in its cgroups
                    dst = d.get_vm("same1")["pid"]
                    groups = _cgroups(src), _cgroups(dst) if dst else set()
                    both = _rss_mib(src) + _rss_mib(dst)
                except (vmkit.NotFoundError, OSError):  # not there yet, or gone
                    continue
                if not (groups[0] and groups[1]):  # not there yet, or exiting
                    continue
                assert groups[0].isdisjoint(groups[1]), groups
                assert all(g.endswith("/" + group_name(source.home, "same1", src))
                           for g in groups[0])
                assert all(g.endswith("/" + group_name(destination.home, "same1", dst))
                           for g in groups[1])
                apart.append(dst)
                peak = max(peak, both)
        c.wait_operation(op["id"])  # succeeded: the source lived until the move was done
        assert apart
        # Together the two QEMUs held more than one VM's cap: in one shared group, one of
        # them would have been killed.
        assert peak > memory_cap(MEMORY) >> 20, peak
        assert c.list_vms() == []
    assert not any(g.exists() for g in limits.groups("same1", src))  # released
    with destination.client() as d:
        vm = d.get_vm("same1")
        assert vm["state"] == "running" and vm["pid"] == apart[-1]
        assert d.exec("same1", ["kill", "-0", hog]).exit_code == 0  # the same, holding on


def test_an_arrival_whose_qemu_dies_is_removed_at_once(hosts) -> None:
    source, destination, url, token = hosts
    with source.client() as c:
        c.create_vm("same2", network="none", disk="2G")
        c.exec("same2", ["sh", "-c", COUNTER])
        # Enough data on the disk that the copy takes a while.
        c.exec("same2", ["sh", "-c", "dd if=/dev/urandom of=/root/big bs=1M count=200; sync"])
        op = c.migrate("same2", url, token)
        _wait_for_copy(c, op)
        with destination.client() as d:
            os.kill(d.get_vm("same2")["pid"], signal.SIGKILL)
        with pytest.raises(vmkit.VmkitError):
            c.wait_operation(op["id"])
        # The source's abort waits for the destination's own removal: both are done now.
        with destination.client() as d:
            assert d.list_vms() == []
        assert not list((destination.home / "vms").iterdir())
        assert c.get_vm("same2")["state"] == "running"
        first = count(c, "same2")
        time.sleep(0.3)
        assert count(c, "same2") > first
        assert c.exec("same2", ["ls", "/root/big"]).exit_code == 0


def test_a_vm_gets_new_port_forwards_at_a_destination_on_this_host(hosts) -> None:
    source, destination, url, token = hosts
    old, new = free_port(), free_port()
    with source.client() as c:
        c.create_vm("same3", network="restricted", ports=[f"{old}:8080"])
        script = "mkdir -p /www && echo hello-from-same3 > /www/index.html && httpd -p 8080 -h /www"
        assert c.exec("same3", ["sh", "-c", script]).exit_code == 0
        assert _get(f"http://127.0.0.1:{old}/index.html", time.monotonic() + 20).status_code == 200
        before = c.get_vm("same3")
        # Its own forwards are this host's ports, which it holds until the switch.
        with pytest.raises(vmkit.VmkitError, match=rf"host port 127\.0\.0\.1:{old}/tcp is not "
                                                   r"available.*'vmkit migrate -p'"):
            c.wait_operation(c.migrate("same3", url, token)["id"])
        with pytest.raises(vmkit.InvalidInputError, match="invalid port"):
            c.migrate("same3", url, token, ports=["8080:99999"])
        assert c.get_vm("same3")["state"] == "running"
    with destination.client() as d:
        assert d.list_vms() == []
    assert source.cli("host", "add", "there", url, "--token", token).returncode == 0
    r = source.cli("migrate", "same3", "--to", "there", "-p", f"{new}:8080")
    assert r.returncode == 0, r.stderr.decode()
    with destination.client() as d:
        vm = d.get_vm("same3")
        assert vm["ports"] == [{"host_addr": "127.0.0.1", "host_port": new, "guest_port": 8080,
                                "proto": "tcp"}]
        unchanged = ("image", "cpus", "memory_mib", "disk", "network", "networks", "mac")
        assert {k: vm[k] for k in unchanged} == {k: before[k] for k in unchanged}
    r = _get(f"http://127.0.0.1:{new}/index.html", time.monotonic() + 20)
    assert r.status_code == 200 and r.text == "hello-from-same3\n"  # the same httpd, moved
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", old), timeout=5).close()

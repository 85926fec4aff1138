"""Private networks, inside a network namespace made for the test: VMs on one network reach
each other by IP and by name; an isolated network reaches nothing else, not even the host."""

from __future__ import annotations

import contextlib
import os
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

from ..conftest import Daemon, clone_home, kill_qemus


@pytest.fixture
def ns_daemon(daemon: Daemon) -> Iterator[tuple[Daemon, str]]:
    """A vmkitd (root) inside a network namespace of its own: its bridges, TAPs, dnsmasq and
    firewall rules exist only there, and go with it."""
    if os.geteuid() != 0 or shutil.which("dnsmasq") is None:
        pytest.skip("private networks need root and dnsmasq (Debian package dnsmasq-base)")
    ns = f"vmkit-net{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    home = Path(tempfile.mkdtemp(prefix="vmkit-it-net-", dir="/tmp"))
    home.rmdir()
    clone_home(daemon.home, home)
    d = Daemon(home, netns=ns)
    try:
        d.start()
        yield d, ns
    finally:
        d.stop()
        kill_qemus(home)
        for pidfile in home.glob("networks/*/dnsmasq.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def sh(c: vmkit.Client, vm: str, script: str) -> vmkit.ExecResult:
    return c.exec(vm, ["sh", "-c", script])


def address(c: vmkit.Client, vm: str) -> str:
    out = sh(c, vm, "ip -4 -o addr show eth0").stdout.decode().split()
    return out[out.index("inet") + 1].split("/")[0]


def fetch(c: vmkit.Client, vm: str, where: str, port: int) -> bytes:
    """The body of http://WHERE:PORT/i as the guest ``vm`` gets it."""
    got = sh(c, vm, f"printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | netcat -w 5 {where} {port}")
    return got.stdout.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in got.stdout else b""


def host_server(ns: str, port: int) -> subprocess.Popen[bytes]:
    """An HTTP server on the host side (in the test's namespace), on every address."""
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server",
                               str(port), "--bind", "0.0.0.0"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(1)
    return server


def test_vms_on_a_network_reach_each_other_by_ip_and_name(ns_daemon) -> None:
    d, ns = ns_daemon
    with d.client() as c:
        net = c.create_network("lab", subnet="10.77.5.0/24", isolated=True)
        assert net["gateway"] == "10.77.5.1" and net["vms"] == []
        c.create_vm("na", network="lab")
        c.create_vm("nb", network="lab")
        assert c.list_networks()[0]["vms"] == ["na", "nb"]
        ip_b = address(c, "nb")
        assert ip_b.startswith("10.77.5.")
        sh(c, "nb", "mkdir -p /w && echo from-nb > /w/i && httpd -p 8080 -h /w")
        # By name (the network's DNS) and by IP, with the guest's dynamically linked netcat:
        # the tiny image's static busybox cannot use libc's resolver.
        for where in ("nb", "nb.lab.vmkit", ip_b):
            assert fetch(c, "na", where, 8080) == b"from-nb\n", where
        assert fetch(c, "na", "nosuchvm", 8080) == b""
        # Isolated: the host answers DHCP and DNS, nothing else; no route leads out.
        server = host_server(ns, 8099)
        try:
            assert sh(c, "na", "netcat -z -w 3 10.77.5.1 8099").exit_code != 0
            assert b"default" not in sh(c, "na", "ip route").stdout
        finally:
            server.kill()
        with pytest.raises(vmkit.ConflictError, match="used by na, nb"):
            c.remove_network("lab")


def test_a_nat_network_reaches_the_host(ns_daemon) -> None:
    d, ns = ns_daemon
    with d.client() as c:
        c.create_network("open")
        c.create_vm("nc1", network=["open", "restricted"], ports=["18123:80"])
        assert c.get_vm("nc1")["networks"] == ["open", "restricted"]
        assert b"eth1" in sh(c, "nc1", "ls /sys/class/net").stdout  # two NICs
        gateway = c.list_networks()[0]["gateway"]
        server = host_server(ns, 8098)
        try:
            assert sh(c, "nc1", f"netcat -z -w 5 {gateway} 8098").exit_code == 0
        finally:
            server.kill()
        c.remove_vm("nc1", force=True)
        c.remove_network("open")
        assert c.list_networks() == []


def test_network_mistakes(ns_daemon) -> None:
    d, _ = ns_daemon
    with d.client() as c:
        c.create_network("lab", subnet="10.77.9.0/24")
        for args, error, why in (
                (("lab",), vmkit.ConflictError, "already exists"),
                (("lab2", "10.77.9.128/25"), vmkit.ConflictError, "overlaps network lab"),
                (("lab3", "8.8.8.0/24"), vmkit.InvalidInputError, "private IPv4"),
                (("lab4", "10.77.9.0/33"), vmkit.InvalidInputError, "invalid subnet"),
                (("nat",), vmkit.InvalidInputError, "built-in")):
            with pytest.raises(error, match=why):
                c.create_network(*args)
        with pytest.raises(vmkit.NotFoundError, match="no network named 'nope'"):
            c.create_vm("nx", network="nope")
        with pytest.raises(vmkit.NotFoundError):
            c.get_vm("nx")


def test_a_fork_on_a_private_network_gets_its_own_address_and_name(ns_daemon) -> None:
    d, _ = ns_daemon
    with d.client() as c:
        c.create_network("lab", subnet="10.77.7.0/24", isolated=True)
        c.create_vm("src", network="lab")
        sh(c, "src", "mkdir -p /w && echo from-src > /w/i && httpd -p 8080 -h /w")
        c.create_snapshot("src", "s1")
        fork = c.fork("src@s1", "twin")
        assert fork["networks"] == ["lab"] and fork["mac"] != c.get_vm("src")["mac"]
        ip_src, ip_twin = address(c, "src"), address(c, "twin")
        assert ip_twin != ip_src and ip_twin.startswith("10.77.7.")
        # Each answers by its own name: the fork's httpd (forked with it) and the source's.
        assert fetch(c, "twin", "src", 8080) == b"from-src\n"
        assert fetch(c, "src", "twin", 8080) == b"from-src\n"
        resolve = 'my @a = gethostbyname($ARGV[0]) or exit 1; print join(".", unpack("C4", $a[4]))'
        assert c.exec("src", ["perl", "-e", resolve, "twin"]).stdout.decode() == ip_twin

"""Private networks without root: QEMU dgram sockets switched by vmkitd, which also serves
DHCP and DNS. The daemon is told to use them (VMKIT_NETWORKS=switch), as one not running as
root does; no IP traffic leaves the guests, so no network namespace is needed."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Daemon, clone_home, kill_qemus
from .test_networks import address, fetch, sh


@pytest.fixture
def switch_daemon(daemon: Daemon) -> Iterator[Daemon]:
    home = Path(tempfile.mkdtemp(prefix="vmkit-it-sw-", dir="/tmp"))
    home.rmdir()
    clone_home(daemon.home, home)
    d = Daemon(home, VMKIT_NETWORKS="switch")
    try:
        d.start()
        yield d
    finally:
        d.stop()
        kill_qemus(home)
        shutil.rmtree(home, ignore_errors=True)


def test_vms_on_a_switched_network_reach_each_other_by_name(switch_daemon) -> None:
    d = switch_daemon
    with d.client() as c:
        net = c.create_network("lab", subnet="10.77.6.0/24")
        assert net["driver"] == "switch" and net["bridge"] == "" and net["isolated"]
        c.create_vm("sa", network="lab")
        c.create_vm("sb", network=["restricted", "lab"])
        out = sh(c, "sb", "ip -4 -o addr show eth1").stdout.decode().split()
        ip_b = out[out.index("inet") + 1].split("/")[0]
        assert ip_b.startswith("10.77.6.") and address(c, "sa").startswith("10.77.6.")
        sh(c, "sb", "mkdir -p /w && echo from-sb > /w/i && httpd -p 8080 -h /w")
        for where in ("sb", "sb.lab.vmkit", ip_b):
            assert fetch(c, "sa", where, 8080) == b"from-sb\n", where
        assert fetch(c, "sa", "nosuchvm", 8080) == b""
        assert b"default" not in sh(c, "sa", "ip route").stdout  # no way out
        # A fork gets its own address and name on the switch.
        c.create_snapshot("sa", "s1")
        c.fork("sa@s1", "sc")
        assert address(c, "sc") not in (address(c, "sa"), ip_b)
        assert fetch(c, "sc", "sb", 8080) == b"from-sb\n"
        assert fetch(c, "sa", "sb", 8080) == b"from-sb\n"  # the source keeps its address
    # The switch comes back with the daemon, where running guests (and jails) find it.
    d.stop()
    d.start()
    with d.client() as c:
        assert fetch(c, "sa", "sb", 8080) == b"from-sb\n"

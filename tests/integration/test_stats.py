"""vmkit stats and /metrics: counters that move when the guest does something."""

from __future__ import annotations

import httpx

from ..conftest import Daemon


def test_counters_follow_what_the_guest_does(client, make_vm, daemon: Daemon) -> None:
    make_vm("st1")
    before = client.stats("st1")
    assert before["state"] == "running" and before["memory_limit_bytes"] == 256 << 20
    assert 0 < before["memory_rss_bytes"] and before["cpu_seconds"] > 0
    assert before["net_rx_bytes"] > 0  # DHCP at boot, counted by the guest
    client.exec("st1", ["sh", "-c", "dd if=/dev/urandom of=/root/f bs=1M count=16 && sync"])
    after = client.stats("st1")
    assert after["disk_write_bytes"] - before["disk_write_bytes"] >= 16 << 20
    assert after["cpu_seconds"] > before["cpu_seconds"]
    assert 0 <= after["cpu_percent"]
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.home / "run" / "vmkitd.sock"))
                      ) as http:
        text = http.get("http://vmkitd/metrics").text
    assert 'vmkit_vm_running{state="running",vm="st1"} 1.0' in text
    written = next(line for line in text.splitlines()
                   if line.startswith('vmkit_vm_disk_written_bytes_total{vm="st1"}'))
    assert float(written.split()[-1]) >= 16 << 20
    client.stop_vm("st1")
    stopped = client.stats("st1")
    assert stopped["state"] == "stopped" and stopped["cpu_seconds"] is None
    r = daemon.cli("stats", "st1")
    assert r.returncode == 0 and b"st1" in r.stdout and b"stopped" in r.stdout

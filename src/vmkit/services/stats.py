"""Resource counters of running VMs, for 'vmkit stats' and Prometheus' /metrics.

CPU time and resident memory are the QEMU process's own (from /proc), disk counters come from
QEMU (query-blockstats) and network counters from the guest agent: user-mode networking has
no host-side counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from ..errors import VmkitError
from ..state import LIVE

if TYPE_CHECKING:
    from ..core.core import Core
    from ..machine.process import Machine

TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE = 0.25  # seconds between two CPU readings when there is no recent one


class Stats:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._last_cpu: dict[str, tuple[float, float]] = {}  # VM -> (when, CPU seconds)

    async def of(self, name: str) -> dict[str, Any]:
        rec = self.core.record(name)
        machine = self.core.machines.get(name) if rec.state in LIVE else None
        out: dict[str, Any] = {"name": name, "state": rec.state.value, "cpus": rec.spec.cpus,
                               "memory_limit_bytes": rec.spec.memory_mib << 20}
        if machine is None:
            return out
        cpu_s, percent = await self._cpu(name, machine.pid)
        out.update(cpu_seconds=cpu_s, cpu_percent=percent,
                   memory_rss_bytes=_rss(machine.pid), **await _disk(machine),
                   **await _network(machine))
        return out

    async def all(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.of(r.name) for r in self.core.store.vms())))

    async def _cpu(self, name: str, pid: int) -> tuple[float, float]:
        """CPU seconds used, and the share of one CPU (%) used since the last reading."""
        now, used = time.monotonic(), _cpu_seconds(pid)
        when, before = self._last_cpu.get(name, (0.0, 0.0))
        if now - when > 60 or used < before:  # no recent reading: take one now
            await asyncio.sleep(SAMPLE)
            when, before = now, used
            now, used = time.monotonic(), _cpu_seconds(pid)
        self._last_cpu[name] = (now, used)
        return used, round(100 * (used - before) / max(now - when, 1e-3), 1)


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _disk(machine: Machine) -> dict[str, int]:
    with contextlib.suppress(VmkitError, StopIteration, KeyError):
        dev = next(d for d in await machine.execute("query-blockstats")
                   if d.get("device") == "disk0")
        s = dev["stats"]
        return {"disk_read_bytes": s["rd_bytes"], "disk_write_bytes": s["wr_bytes"],
                "disk_read_ops": s["rd_operations"], "disk_write_ops": s["wr_operations"]}
    return {}


async def _network(machine: Machine) -> dict[str, Any]:
    """Totals over the guest's interfaces but loopback, as the guest counts them, and the
    guest's addresses (link-local ones left out)."""
    if not machine.agent.connected:
        return {}
    try:
        nics = await machine.agent.execute("guest-network-get-interfaces", timeout=2.0)
    except VmkitError:
        return {}
    totals = {"net_rx_bytes": 0, "net_tx_bytes": 0, "net_rx_packets": 0, "net_tx_packets": 0}
    ips: list[str] = []
    for nic in nics:
        s = nic.get("statistics")
        if nic.get("name") == "lo" or not s:
            continue
        ips += [str(a["ip-address"]) for a in nic.get("ip-addresses") or []
                if a.get("ip-address") and not str(a["ip-address"]).startswith("fe80:")]
        for key, field in (("net_rx_bytes", "rx-bytes"), ("net_tx_bytes", "tx-bytes"),
                           ("net_rx_packets", "rx-packets"), ("net_tx_packets", "tx-packets")):
            totals[key] += int(s.get(field, 0))
    return {**totals, "ips": ips}


# Prometheus: (field, metric name, type, help)
METRICS = [
    ("cpu_seconds", "vmkit_vm_cpu_seconds_total", "counter", "CPU time of the VM's QEMU"),
    ("memory_rss_bytes", "vmkit_vm_memory_rss_bytes", "gauge", "Resident memory of its QEMU"),
    ("memory_limit_bytes", "vmkit_vm_memory_limit_bytes", "gauge", "Memory given to the guest"),
    ("disk_read_bytes", "vmkit_vm_disk_read_bytes_total", "counter", "Bytes read from its disk"),
    ("disk_write_bytes", "vmkit_vm_disk_written_bytes_total", "counter",
     "Bytes written to its disk"),
    ("net_rx_bytes", "vmkit_vm_network_receive_bytes_total", "counter",
     "Bytes its guest received"),
    ("net_tx_bytes", "vmkit_vm_network_transmit_bytes_total", "counter",
     "Bytes its guest sent"),
]


def prometheus(vms: list[dict[str, Any]]) -> bytes:
    """The Prometheus text exposition of ``vms`` (as Stats.of gives them)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    families: list[Any] = []
    up = GaugeMetricFamily("vmkit_vm_running", "1 if the VM's QEMU runs", labels=["vm", "state"])
    for vm in vms:
        up.add_metric([vm["name"], vm["state"]], 1.0 if "cpu_seconds" in vm else 0.0)
    families.append(up)
    for field, name, kind, text in METRICS:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = cls(name.removesuffix("_total") if kind == "counter" else name, text,
                     labels=["vm"])
        for vm in vms:
            if field in vm:
                family.add_metric([vm["name"]], float(vm[field]))
        families.append(family)

    class Snapshot:
        def collect(self) -> Any:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry)

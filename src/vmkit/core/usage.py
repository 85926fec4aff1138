"""How busy this host is, for the dashboard's host summary: CPU, memory and the disk that
holds VMKIT_HOME, each as used of total, plus what the VMs here were given."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

from ..state import LIVE
from ..store import VmRecord

SAMPLE = 0.25  # seconds between the two readings of /proc/stat that give CPU use


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat's first line."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value.split()[0]) * 1024
    return out


async def host_usage(home: Path, vms: list[VmRecord]) -> dict[str, Any]:
    busy0, total0 = _cpu_times()
    await asyncio.sleep(SAMPLE)
    busy1, total1 = _cpu_times()
    mem = _meminfo()
    disk = shutil.disk_usage(home)
    running = [v for v in vms if v.state in LIVE]
    return {
        "cpus": os.cpu_count() or 1,
        "cpu_percent": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
        "load": list(os.getloadavg()),
        "memory_total_bytes": mem["MemTotal"],
        "memory_used_bytes": mem["MemTotal"] - mem.get("MemAvailable", mem["MemFree"]),
        "disk_path": str(home),
        "disk_total_bytes": disk.total, "disk_used_bytes": disk.used,
        "vms": len(vms), "vms_running": len(running),
        "vm_cpus": sum(v.spec.cpus for v in running),
        "vm_memory_bytes": sum(v.spec.memory_mib for v in running) << 20,
    }

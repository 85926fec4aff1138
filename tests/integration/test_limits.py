"""Resource limits: each QEMU in cgroups of its own, and disk throttling the guest feels."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import vmkit
from vmkit.machine.limits import Limits, memory_cap


def test_cpu_and_memory_limits_hold_the_qemu_process(client, make_vm) -> None:
    limits = Limits(Path(client.info()["home"]))
    if not limits.enforced:
        assert client.info()["limits"].startswith("not enforced: ")
        pytest.skip(f"cgroups not usable here: {limits.reason}")
    assert client.info()["limits"] == f"cgroup v{limits.version}"
    pid = make_vm("lim1", cpus=2, memory="320M")["pid"]
    groups = limits.groups("lim1", pid)
    for group in groups:
        assert str(pid) in (group / "cgroup.procs").read_text().split()
    wanted = {"cpu.max", "memory.max", "cpu.cfs_quota_us", "cpu.cfs_period_us",
              "memory.limit_in_bytes"}
    files = {p.name: p.read_text().strip() for g in groups for p in g.iterdir()
             if p.name in wanted}
    if limits.version == 2:
        assert files["cpu.max"] == "200000 100000"
        assert int(files["memory.max"]) == memory_cap(320)
    else:
        assert files["cpu.cfs_quota_us"] == "200000" and files["cpu.cfs_period_us"] == "100000"
        assert int(files["memory.limit_in_bytes"]) == memory_cap(320)
    client.stop_vm("lim1")
    assert not any(g.exists() for g in groups)  # removed with the process


def test_io_limit_throttles_the_guests_disk(client, make_vm) -> None:
    vm = make_vm("lim2", io_limit="1M")
    assert vm["io_bps"] == 1 << 20
    start = time.monotonic()
    r = client.exec("lim2", ["dd", "if=/dev/zero", "of=/root/f", "bs=1M", "count=6",
                             "oflag=direct"])
    assert r.exit_code == 0, r.stderr
    # 6 MiB at 1 MiB/s: QEMU lets a short burst through, the rest waits.
    assert time.monotonic() - start > 3.0


def test_bad_limits_are_refused(client) -> None:
    with pytest.raises(vmkit.InvalidInputError, match="I/O limit"):
        client.create_vm("lim3", io_limit="fast")


def test_limits_release_without_a_group(tmp_path: Path) -> None:
    limits = Limits(tmp_path / "home", root=tmp_path, proc_self=tmp_path / "missing")
    assert not limits.enforced and "cannot read" in limits.reason
    limits.apply("x", 1, 1, 256)  # nothing to do, nothing raised
    limits.release("x")
    limits.clean()

"""CPU and memory limits of a VM's QEMU process, with Linux cgroups (v2, or v1's cpu and
memory controllers), in a group of its own under vmkitd's: ``.../vmkit/<home>.<vm>.<pid>``
(group_name), so that no two QEMUs ever share one: not a VM's source and destination QEMUs
while it migrates between two VMKIT_HOMEs on one host, nor VMs of one name in two homes.

--cpus N caps the process at N CPUs' worth of time (CFS quota); --memory M caps its memory at
M plus QEMU's own overhead, so that a runaway QEMU cannot take the host's memory. Where vmkitd
cannot manage cgroups (not root, read-only or absent), limits are reported as not enforced,
with the reason, and the VM runs without them.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
# Memory QEMU needs beyond the guest's RAM: TCG's translation cache, device and I/O buffers,
# and while a VM migrates, the disk mirror and the migration's own (a 256 MiB guest's QEMU was
# seen at 450 MiB then, and cgroup v1 counts its page cache too). The cap is the guest's RAM
# plus this much, or plus half of it if that is larger: it stops a runaway QEMU, not a guest.
OVERHEAD = 768 << 20


def memory_cap(memory_mib: int) -> int:
    ram = memory_mib << 20
    return ram + max(OVERHEAD, ram // 2)


def home_tag(home: Path) -> str:
    """A short name for VMKIT_HOME ``home``: its groups begin with it."""
    return hashlib.sha256(str(home).encode()).hexdigest()[:12]


def group_name(home: Path, vm: str, pid: int) -> str:
    """The cgroup of QEMU process ``pid`` of VM ``vm`` in VMKIT_HOME ``home``. VM names have
    no dots, so ``<tag>.<vm>.*`` are exactly that VM's groups."""
    return f"{home_tag(home)}.{vm}.{pid}"


class Limits:
    """Where this host's cgroups are and whether vmkitd can use them."""

    def __init__(self, home: Path, root: Path = ROOT,
                 proc_self: Path = Path("/proc/self/cgroup")) -> None:
        self.home, self.root = home, root
        self.version, self.reason = 0, ""
        self._bases: dict[str, Path] = {}  # controller ("cpu", "memory", or "" for v2) -> dir
        try:
            own = proc_self.read_text().splitlines()
        except OSError as e:
            self.reason = f"cannot read {proc_self}: {e.strerror}"
            return
        if (root / "cgroup.controllers").exists():
            path = next((line.split(":", 2)[2] for line in own if line.startswith("0::")), "/")
            self._setup_v2(root / path.lstrip("/"))
        elif (root / "cpu").is_dir() and (root / "memory").is_dir():
            for line in own:
                _, controllers, path = line.split(":", 2)
                for c in controllers.split(","):
                    if c in ("cpu", "memory"):
                        self._bases[c] = root / c / path.lstrip("/") / "vmkit"
            self._check(list(self._bases.values()), version=1)
        else:
            self.reason = "this host has no cgroup cpu and memory controllers"

    def _setup_v2(self, own: Path) -> None:
        base = own / "vmkit"
        try:  # each level must hand the controllers down to the next
            (own / "cgroup.subtree_control").write_text("+cpu +memory")
            base.mkdir(exist_ok=True)
            (base / "cgroup.subtree_control").write_text("+cpu +memory")
        except OSError as e:
            self.reason = f"cannot manage cgroups at {base} ({e.strerror})"
            return
        self._bases[""] = base
        self.version = 2

    def _check(self, bases: list[Path], version: int) -> None:
        try:
            for base in bases:
                base.mkdir(exist_ok=True)
        except OSError as e:
            self.reason = f"cannot manage cgroups at {bases[0].parent} ({e.strerror})"
            return
        self.version = version

    @property
    def enforced(self) -> bool:
        return self.version != 0

    def apply(self, vm: str, pid: int, cpus: int, memory_mib: int) -> None:
        """Put process ``pid`` into a cgroup of its own with VM ``vm``'s limits."""
        if not self.enforced:
            return
        quota, cap = cpus * PERIOD_US, memory_cap(memory_mib)
        if self.version == 2:
            group = self._group("", vm, pid)
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            (group / "memory.max").write_text(str(cap))
            (group / "cgroup.procs").write_text(str(pid))
            return
        cpu, memory = self._group("cpu", vm, pid), self._group("memory", vm, pid)
        (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        (memory / "memory.limit_in_bytes").write_text(str(cap))
        for group in (cpu, memory):
            (group / "cgroup.procs").write_text(str(pid))

    def groups(self, vm: str, pid: int) -> list[Path]:
        return [base / group_name(self.home, vm, pid) for base in self._bases.values()]

    def _group(self, controller: str, vm: str, pid: int) -> Path:
        group = self._bases[controller] / group_name(self.home, vm, pid)
        group.mkdir(exist_ok=True)
        return group

    def release(self, vm: str) -> None:
        """Remove the VM's cgroups that no process is in any more (its QEMU is gone). Found by
        name, not pid: a QEMU that an earlier vmkitd started is released the same way."""
        self._remove_empty(f"{home_tag(self.home)}.{vm}.*")

    def clean(self) -> None:
        """Remove this home's cgroups that no process is in: left by a vmkitd that died."""
        self._remove_empty(f"{home_tag(self.home)}.*")

    def _remove_empty(self, pattern: str) -> None:
        for base in self._bases.values():
            for group in base.glob(pattern):
                with contextlib.suppress(OSError):  # a live QEMU's group is busy: it stays
                    group.rmdir()

    def describe(self) -> str:
        return f"cgroup v{self.version}" if self.enforced else f"not enforced: {self.reason}"

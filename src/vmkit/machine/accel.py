"""Facts about this host that the QEMU command line depends on, found by probing.

KVM is used only where it really runs a guest at hardware speed. A /dev/kvm that opens is not
proof: a nested or paravirtual backend (kvm_pvm) may emulate guest kernel code a thousand times
slower than TCG. So the probe boots a real kernel under KVM with a short deadline: the kernel
of the image the VM boots (a native KVM reaches tiny's initramfs in well under a second), or of
any image that has one, or the host's own; an emulating backend needs minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import HostError
from ..paths import atomic_write
from . import qemu as qemu_probe
from .argv import BootFiles, HostFacts, kernel_cmdline

PROBE_DEADLINE = 1.5  # seconds for KVM to boot the kernel to the initramfs marker
PC_PROBE_DEADLINE = 3.0  # seconds for KVM to boot a kernel through SeaBIOS to its root mount
PROBE_MARKER = b"VMKIT-PROBE-OK"


def tsc_khz() -> int:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    raise HostError("cannot read the CPU frequency from /proc/cpuinfo")


def host_kernel() -> Path | None:
    """The kernel this host runs, if vmkitd may read it: a kernel to probe KVM with when no
    image has one."""
    path = Path("/boot") / f"vmlinuz-{os.uname().release}"
    return path if os.access(path, os.R_OK) else None


def _probe_argv(qemu: qemu_probe.Qemu, kernel: Path, boot: BootFiles | None, khz: int
                ) -> tuple[list[str], bytes, float]:
    """The command line that boots ``kernel`` under KVM, what its console prints when it got
    far enough, and how long a native KVM may take to get there."""
    base = [qemu.binary, *(["-L", qemu.datadir] if qemu.datadir else []), "-accel", "kvm",
            "-cpu", "host", "-m", "128M", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-serial", "stdio", "-kernel", str(kernel)]
    if boot is not None and boot.profile == "tiny":  # its initramfs prints the marker
        from ..spec import VmSpec

        facts = HostFacts(qemu.binary, "kvm", khz, qemu.datadir)
        return [*base, "-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on",
                "-initrd", str(boot.initrd),
                "-append", kernel_cmdline(VmSpec("probe"), facts, False, probe=True)
                ], PROBE_MARKER, PROBE_DEADLINE
    # Any other kernel boots without a root filesystem until it panics for want of one.
    return [*base, "-machine", "q35", "-append", "console=ttyS0 panic=-1 root=/dev/null"
            ], b"Kernel panic", PC_PROBE_DEADLINE


def kvm_boots_fast(qemu: qemu_probe.Qemu, boot: BootFiles | None, khz: int
                   ) -> tuple[bool, str]:
    """Boot a real kernel under KVM, the image's or else the host's own; True if it gets far
    enough in time."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not available"
    kernel = boot.kernel if boot is not None and boot.kernel is not None else host_kernel()
    if kernel is None:
        return False, "no kernel to probe KVM with (the image boots by firmware and the " \
                      "host's own kernel cannot be read): using TCG"
    argv, marker, deadline = _probe_argv(qemu, kernel, boot if boot and boot.kernel else None,
                                         khz)
    start = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, timeout=deadline, check=False)
    except subprocess.TimeoutExpired:
        return False, f"KVM did not boot a kernel within {deadline} s (emulated or nested)"
    elapsed = time.monotonic() - start
    if marker not in out.stdout:
        return False, f"KVM failed to boot a kernel: {out.stderr.decode(errors='replace')[-200:]}"
    return True, f"KVM booted a kernel in {elapsed:.2f} s"


def probe_host(boot: BootFiles | None, cache: Path) -> tuple[HostFacts, str]:
    """Host facts, probed once per host boot and QEMU binary, then cached in ``cache``."""
    qemu = qemu_probe.current()
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""
    key = f"{boot_id}:{qemu.binary}:{os.stat(qemu.binary).st_mtime_ns}"
    try:
        cached = json.loads(cache.read_text())
        if cached["key"] == key:
            return HostFacts(**cached["facts"]), cached["reason"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    khz = tsc_khz()
    use_kvm, reason = kvm_boots_fast(qemu, boot, khz)
    facts = HostFacts(qemu.binary, "kvm" if use_kvm else "tcg", khz, qemu.datadir)
    atomic_write(cache, json.dumps({"key": key, "facts": asdict(facts), "reason": reason}).encode())
    return facts, reason

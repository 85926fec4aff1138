"""Facts about this host that the QEMU command line depends on, found by probing.

KVM is used only where it really runs a guest at hardware speed. A /dev/kvm that opens is not
proof: a nested or paravirtual backend (kvm_pvm) may emulate guest kernel code a thousand times
slower than TCG. So the probe boots the image's real kernel under KVM with a short deadline; a
native KVM reaches the initramfs in well under a second, TCG needs about two.
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
PROBE_MARKER = b"VMKIT-PROBE-OK"


def tsc_khz() -> int:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    raise HostError("cannot read the CPU frequency from /proc/cpuinfo")


def kvm_boots_fast(qemu: qemu_probe.Qemu, boot: BootFiles, khz: int) -> tuple[bool, str]:
    """Boot the kernel under KVM to the initramfs marker; True if it gets there in time."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not available"
    from ..spec import VmSpec

    facts = HostFacts(qemu.binary, "kvm", khz, qemu.datadir)
    argv = [qemu.binary, *(["-L", qemu.datadir] if qemu.datadir else []), "-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on", "-accel", "kvm",
            "-cpu", "host", "-m", "128M", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-kernel", str(boot.kernel), "-initrd", str(boot.initrd),
            "-append", kernel_cmdline(VmSpec("probe"), facts, False, probe=True),
            "-serial", "stdio"]
    start = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, timeout=PROBE_DEADLINE, check=False)
    except subprocess.TimeoutExpired:
        return False, f"KVM did not boot a kernel within {PROBE_DEADLINE} s (emulated or nested)"
    elapsed = time.monotonic() - start
    if PROBE_MARKER not in out.stdout:
        return False, f"KVM failed to boot a kernel: {out.stderr.decode(errors='replace')[-200:]}"
    return True, f"KVM booted a kernel in {elapsed:.2f} s"


def probe_host(boot: BootFiles, cache: Path) -> tuple[HostFacts, str]:
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

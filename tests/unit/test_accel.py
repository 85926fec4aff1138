"""machine/accel.py: which kernel the KVM probe boots, and how (no QEMU runs here)."""

from __future__ import annotations

from pathlib import Path

from vmkit.machine import accel
from vmkit.machine.argv import BootFiles
from vmkit.machine.qemu import Qemu

QEMU = Qemu("/usr/bin/qemu-system-x86_64", "7.2.22", None, ("microvm", "q35"))


def test_tiny_is_probed_to_its_initramfs_marker() -> None:
    tiny = BootFiles(Path("/i/vmlinux"), Path("/i/initrd.cpio"), Path("/i/rootfs.raw"), 1 << 30)
    argv, marker, deadline = accel._probe_argv(QEMU, tiny.kernel, tiny, 2_500_000)
    assert argv[argv.index("-initrd") + 1] == "/i/initrd.cpio"
    assert argv[argv.index("-machine") + 1].startswith("microvm")
    assert marker == accel.PROBE_MARKER and deadline == accel.PROBE_DEADLINE


def test_any_other_kernel_is_probed_to_its_root_mount_panic() -> None:
    debian = BootFiles(Path("/d/vmlinuz"), Path("/d/initrd.img"), Path("/d/rootfs.raw"),
                       4 << 30, profile="pc")
    for boot in (debian, None):  # an image's kernel, or the host's own
        argv, marker, deadline = accel._probe_argv(QEMU, Path("/d/vmlinuz"), boot, 2_500_000)
        assert "-initrd" not in argv and argv[argv.index("-machine") + 1] == "q35"
        assert "panic=-1" in argv[argv.index("-append") + 1]
        assert marker == b"Kernel panic" and deadline == accel.PC_PROBE_DEADLINE


def test_no_kvm_device_means_tcg(monkeypatch) -> None:
    monkeypatch.setattr(accel.os, "access", lambda path, mode: False)
    use, reason = accel.kvm_boots_fast(QEMU, None, 2_500_000)
    assert not use and "/dev/kvm" in reason

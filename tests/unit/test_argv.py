"""machine/argv.py: the QEMU command line built from a spec, checked piece by piece."""

from __future__ import annotations

import builtins
import os
import socket
import subprocess
from pathlib import Path

import pytest

from vmkit.machine.argv import (RAM_ID, SANDBOX, BootFiles, HostFacts, RamFile, build_argv,
                               kernel_cmdline)
from vmkit.paths import VmPaths
from vmkit.spec import VmSpec, make_spec

MAC = "52:54:00:12:34:56"
VM_DIR = Path("/nonexistent/vmkit-test/vms/web")  # build_argv must not care that it is absent
PATHS = VmPaths(VM_DIR)
DISK = Path("/nonexistent/vmkit-test/disks/0123456789abcdef.qcow2")
BOOT = BootFiles(Path("/nonexistent/img/vmlinux"), Path("/nonexistent/img/initrd.cpio"),
                 Path("/nonexistent/img/rootfs.raw"), rootfs_bytes=1 << 30)
TCG = HostFacts(qemu="/usr/bin/qemu-system-x86_64", accel="tcg", tsc_khz=2_500_000)
KVM = HostFacts(qemu="/usr/bin/qemu-system-x86_64", accel="kvm", tsc_khz=3_000_123)


def argv_for(spec: VmSpec, facts: HostFacts = TCG, boot: BootFiles = BOOT) -> list[str]:
    return build_argv(spec, boot, PATHS, facts, MAC, DISK)


def option(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` (e.g. all '-device' arguments), in order."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def one(argv: list[str], flag: str) -> str:
    values = option(argv, flag)
    assert len(values) == 1, f"{flag} given {len(values)} times: {values}"
    return values[0]


def cmdline(argv: list[str]) -> list[str]:
    return one(argv, "-append").split()


def test_machine_and_resources() -> None:
    argv = argv_for(make_spec("web", cpus=2, memory="512M"))
    assert argv[0] == TCG.qemu
    assert one(argv, "-machine").split(",")[0] == "microvm"
    assert one(argv, "-accel") == "tcg"
    assert one(argv, "-cpu") == "max"
    assert one(argv, "-smp") == "2"
    assert one(argv, "-m") == "512M"
    assert one(argv, "-name").startswith("web,")
    for flag in ("-nodefaults", "-no-user-config", "-no-reboot"):
        assert flag in argv
    assert one(argv, "-display") == "none"


def test_a_qemu_outside_usr_gets_its_own_firmware() -> None:
    assert "-L" not in argv_for(make_spec("web"))
    q10 = HostFacts(qemu="/opt/q10/usr/bin/qemu-system-x86_64", accel="tcg", tsc_khz=2_500_000,
                    datadir="/opt/q10/usr/share/qemu")
    argv = argv_for(make_spec("web"), q10)
    assert argv[:3] == [q10.qemu, "-L", "/opt/q10/usr/share/qemu"]


def test_kvm_uses_host_cpu() -> None:
    argv = argv_for(make_spec("web"), KVM)
    assert one(argv, "-accel") == "kvm"
    assert one(argv, "-cpu") == "host"


def test_sandbox() -> None:
    sandbox = one(argv_for(make_spec("web")), "-sandbox")
    assert sandbox == SANDBOX
    opts = sandbox.split(",")
    assert opts[0] == "on"
    for o in ("obsolete=deny", "elevateprivileges=deny", "spawn=deny", "resourcecontrol=deny"):
        assert o in opts


def test_boot_files() -> None:
    argv = argv_for(make_spec("web"))
    assert one(argv, "-kernel") == "/nonexistent/img/vmlinux"
    assert one(argv, "-initrd") == "/nonexistent/img/initrd.cpio"
    drive = one(argv, "-drive").split(",")
    assert f"file={DISK}" in drive and "format=qcow2" in drive
    assert "virtio-blk-device,drive=disk0" in option(argv, "-device")
    assert one(argv, "-pidfile") == str(PATHS.pid)


@pytest.mark.parametrize("facts", [TCG, KVM])
def test_kernel_cmdline_timing_and_hostname(facts: HostFacts) -> None:
    args = cmdline(argv_for(make_spec("db-1"), facts))
    assert "vmkit.hostname=db-1" in args
    assert f"lpj={facts.tsc_khz * 1000 // 250}" in args
    assert f"tsc_early_khz={facts.tsc_khz}" in args
    assert "console=ttyS0" in args and "root=/dev/vda" in args


def test_lpj_value() -> None:
    assert "lpj=10000000" in cmdline(argv_for(make_spec("web")))  # 2.5 GHz / HZ 250
    assert "lpj=12000492" in cmdline(argv_for(make_spec("web"), KVM))  # floor division


@pytest.mark.parametrize("disk, grow", [
    (None, False),  # the image's own size
    ("512M", False),  # smaller than the rootfs: nothing to grow
    ("1G", False),  # exactly the rootfs size
    ("2G", True),
])
def test_grow_root_only_when_disk_is_larger(disk: str | None, grow: bool) -> None:
    args = cmdline(argv_for(make_spec("web", disk=disk)))
    assert ("vmkit.grow=1" in args) is grow


def test_probe_flag() -> None:
    assert "vmkit.probe=1" not in kernel_cmdline(make_spec("web"), TCG, False)
    assert "vmkit.probe=1" in kernel_cmdline(make_spec("web"), TCG, False, probe=True).split()


def test_nat_netdev_with_forwards() -> None:
    spec = make_spec("web", ports=["8080:80", "5353:53/udp", "[::1]:2222:22",
                                   "0.0.0.0:4443:443"])
    argv = argv_for(spec)
    netdev = one(argv, "-netdev").split(",")
    assert netdev[:2] == ["user", "id=net0"]
    assert "restrict=on" not in netdev
    assert [o for o in netdev if o.startswith("hostfwd=")] == [
        "hostfwd=tcp:127.0.0.1:8080-:80",
        "hostfwd=udp:127.0.0.1:5353-:53",
        "hostfwd=tcp:[::1]:2222-:22",
        "hostfwd=tcp:0.0.0.0:4443-:443",
    ]
    assert f"virtio-net-device,netdev=net0,mac={MAC}" in option(argv, "-device")


def test_restricted_network() -> None:
    netdev = one(argv_for(make_spec("web", ports=["8080:80"], network="restricted")), "-netdev")
    assert netdev.split(",") == ["user", "id=net0", "restrict=on",
                                 "hostfwd=tcp:127.0.0.1:8080-:80"]


def test_no_network() -> None:
    argv = argv_for(make_spec("web", network="none"))
    assert "-netdev" not in argv
    assert not [d for d in option(argv, "-device") if d.startswith("virtio-net")]
    assert MAC not in " ".join(argv)


def test_agent_channel() -> None:
    argv = argv_for(make_spec("web"))
    devices = option(argv, "-device")
    assert "virtio-serial-device" in devices
    assert "virtserialport,chardev=agent,name=org.qemu.guest_agent.0" in devices
    chardevs = {c.split(",")[1]: c.split(",") for c in option(argv, "-chardev")}
    assert chardevs["id=agent"][0] == "socket"
    assert f"path={PATHS.agent}" in chardevs["id=agent"]


def test_qmp_and_serial() -> None:
    argv = argv_for(make_spec("web"))
    chardevs = {c.split(",")[1]: c.split(",") for c in option(argv, "-chardev")}
    assert f"path={PATHS.qmp}" in chardevs["id=qmp"]
    assert one(argv, "-mon") == "chardev=qmp,mode=control"
    console = chardevs["id=console"]
    assert f"path={PATHS.console}" in console
    assert f"logfile={VM_DIR / 'serial.log'}" in console
    assert "logappend=on" in console
    assert one(argv, "-serial") == "chardev:console"
    for c in chardevs.values():  # QEMU must not block waiting for a client
        assert "server=on" in c and "wait=off" in c


def test_every_flag_has_a_value() -> None:
    """A crude shape check: no two value-taking flags in a row, no empty arguments."""
    argv = argv_for(make_spec("web", ports=["8080:80"]))
    assert all(a for a in argv)
    no_value = {"-nodefaults", "-no-user-config", "-no-reboot"}
    for a, b in zip(argv[1:], argv[2:]):
        if a.startswith("-") and a not in no_value:
            assert not b.startswith("-"), (a, b)


def test_build_argv_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"build_argv did I/O: {args!r}")

    for mod, name in [(builtins, "open"), (os, "open"), (os, "stat"), (os, "lstat"),
                      (os, "listdir"), (os, "scandir"), (os, "access"), (os, "readlink"),
                      (subprocess, "Popen"), (socket, "socket")]:
        monkeypatch.setattr(mod, name, forbidden)
    spec = make_spec("web", cpus=2, disk="4G", ports=["8080:80"])
    argv = build_argv(spec, BOOT, PATHS, KVM, MAC, DISK)
    monkeypatch.undo()
    assert not VM_DIR.exists()
    assert argv == build_argv(spec, BOOT, PATHS, KVM, MAC, DISK)  # and is deterministic


def test_a_booted_vm_has_anonymous_ram_and_boots() -> None:
    argv = argv_for(make_spec("web"))
    assert "-incoming" not in argv and "memory-backend-file" not in " ".join(argv)


def test_a_fork_maps_the_snapshot_ram_privately_and_waits_for_its_state() -> None:
    ram = Path("/nonexistent/snapshots/abc/ram")
    argv = build_argv(make_spec("web", memory="512M"), BOOT, PATHS, TCG, MAC, DISK,
                      ram=RamFile(ram, shared=False), incoming=True)
    backend = one(argv, "-object").split(",")
    assert backend[0] == "memory-backend-file" and f"id={RAM_ID}" in backend
    assert f"mem-path={ram}" in backend and "share=off" in backend and "size=512M" in backend
    assert f"memory-backend={RAM_ID}" in option(argv, "-machine")
    assert one(argv, "-incoming") == "defer"


def test_preparing_a_snapshot_shares_the_ram_file_and_never_writes_the_disk() -> None:
    argv = build_argv(make_spec("web"), BOOT, PATHS, TCG, MAC, DISK,
                      ram=RamFile(Path("/x/ram"), shared=True), incoming=True,
                      readonly_disk=True)
    assert "share=on" in one(argv, "-object").split(",")
    assert "readonly=on" in one(argv, "-drive").split(",")


def test_the_ram_id_is_qemus_default_so_saved_states_move_between_both_kinds() -> None:
    # A VM booted with anonymous RAM names its RAM block "microvm.ram"; a state saved from it
    # loads only into a QEMU whose RAM block has the same name.
    assert RAM_ID == "microvm.ram"


# --- the pc profile: real operating systems ------------------------------------------------

DEBIAN = BootFiles(Path("/img/vmlinuz"), Path("/img/initrd.img"), Path("/img/rootfs.raw"),
                   4 << 30, profile="pc", cmdline="root=/dev/vda rw",
                   seed=VM_DIR / "seed.iso")
BLANK = BootFiles(None, None, None, 8 << 30, profile="pc", agent=False,
                  cdrom=Path("/img/install.iso"))


def test_a_debian_image_boots_its_own_kernel_on_q35_with_pci_devices() -> None:
    argv = argv_for(make_spec("dev"), boot=DEBIAN)
    assert one(argv, "-machine") == "q35"
    assert one(argv, "-kernel") == "/img/vmlinuz" and one(argv, "-initrd") == "/img/initrd.img"
    assert cmdline(argv)[:3] == ["root=/dev/vda", "rw", "console=tty0"]
    assert "console=ttyS0,115200" in cmdline(argv)
    devices = option(argv, "-device")
    assert "virtio-blk-pci,drive=disk0" in devices  # no bootindex: QEMU boots the kernel
    assert all("-device" not in d and "virtio-blk-device" not in d for d in devices)
    # the seed on virtio: Debian's cloud kernel has no AHCI driver for a CD drive
    assert f"file={VM_DIR}/seed.iso,if=none,id=seed,format=raw,readonly=on" in option(argv, "-drive")
    assert "virtio-blk-pci,drive=seed" in devices
    assert not any(d.startswith("ide-cd") for d in devices)


def test_a_debian_vm_without_a_nic_does_not_wait_for_a_network() -> None:
    mask = "systemd.mask=systemd-networkd-wait-online.service"
    assert mask in cmdline(argv_for(make_spec("dev", network="none"), boot=DEBIAN))
    assert mask not in cmdline(argv_for(make_spec("dev", network="restricted"), boot=DEBIAN))


def test_a_blank_disk_boots_the_cd_through_the_firmware_after_the_disk() -> None:
    spec = make_spec("inst", image=None, cdrom="installer", disk="8G")
    argv = argv_for(spec, boot=BLANK)
    assert "-kernel" not in argv and "-append" not in argv
    assert not any(d.startswith("if=pflash") for d in option(argv, "-drive"))  # SeaBIOS
    devices = option(argv, "-device")
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in devices
    assert "ide-cd,drive=cd0,bus=ide.0,bootindex=1" in devices
    assert "file=/img/install.iso,if=none,id=cd0,media=cdrom,readonly=on" in option(argv, "-drive")


def test_uefi_uses_ovmf_with_the_vms_own_variables() -> None:
    boot = BootFiles(None, None, Path("/img/disk.qcow2"), 1 << 30, "qcow2", profile="pc",
                     firmware="uefi", efi_vars=VM_DIR / "efi-vars.fd", agent=False)
    drives = option(argv_for(make_spec("old", firmware="uefi"), boot=boot), "-drive")
    assert drives[:2] == [
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        f"if=pflash,format=raw,unit=1,file={VM_DIR}/efi-vars.fd"]


def test_a_pc_vm_with_vnc_gets_a_graphics_card() -> None:
    argv = argv_for(make_spec("dev", display="vnc"), boot=DEBIAN)
    assert "VGA" in option(argv, "-device")
    assert "VGA" not in option(argv_for(make_spec("web", display="vnc")), "-device")


def test_a_pc_vm_keeps_its_ram_under_the_pc_name() -> None:
    argv = build_argv(make_spec("dev"), DEBIAN, PATHS, TCG, MAC, DISK,
                      ram=RamFile(Path("/r"), False), incoming=True)
    assert "memory-backend=pc.ram" in option(argv, "-machine")

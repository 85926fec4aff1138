"""Spec -> QEMU command line. A pure function: no I/O, so it is unit-tested to the byte.

Two machine profiles:
  tiny  the fastest boot measured on TCG (FACTS.md): the microvm machine, the uncompressed
        kernel entered through PVH, virtio-mmio devices found through ACPI, and a kernel
        command line that skips calibrations the emulated CPU would spend a second on.
  pc    a q35 PC with PCI devices, for real operating systems: a Debian image booted with its
        own kernel and initrd, or firmware (SeaBIOS or OVMF) booting a disk or an installer CD.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..paths import VmPaths
from ..spec import VmSpec

SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
RAM_IDS = {"tiny": "microvm.ram", "pc": "pc.ram"}  # what QEMU names each machine's RAM
RAM_ID = RAM_IDS["tiny"]
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")  # Debian's ovmf package
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")  # copied per VM: the guest writes it
HZ = 250  # CONFIG_HZ of Debian's kernels; lpj = loops per jiffy = TSC kHz * 1000 / HZ
# Kernel initcalls that cost the most emulated time at boot (measured with initcall_debug)
# and that a VM does not need: tracing and BTF setup, slab sysfs, crypto self-tests.
SKIPPED_INITCALLS = (
    "init_kprobe_trace", "btf_vmlinux_init", "slab_sysfs_init", "crypto_kdf108_init",
    "init_trace_printk_function_export", "blake2s_mod_init",
    # microvm has no PCI bus (virtio is on MMIO): probing for one only prints "PCI: Fatal:
    # No config space access function found" on every console (pci=off does not stop it).
    "pci_arch_init",
)


@dataclass(frozen=True)
class HostFacts:
    qemu: str  # path to qemu-system-x86_64
    accel: str  # "kvm" or "tcg", from the probe
    tsc_khz: int  # host TSC frequency; the guest's TSC runs at the same rate
    datadir: str | None = None  # -L: the firmware of a QEMU unpacked outside /usr (qemu.py)


@dataclass(frozen=True)
class RamFile:
    """Guest RAM kept in a file instead of anonymous memory. ``shared``: the guest writes into
    the file (a snapshot being prepared for forks); private: the guest maps it copy-on-write
    and the file never changes (a fork), so forks of one snapshot share its unchanged pages."""
    path: Path
    shared: bool


@dataclass(frozen=True)
class BootFiles:
    """What a VM boots from: its image's files, and the media of this VM."""
    kernel: Path | None  # None: the firmware boots the disk or the CD
    initrd: Path | None
    rootfs: Path | None  # the image's disk, below the VM's own layers (None: a blank disk)
    rootfs_bytes: int
    rootfs_format: str = "raw"
    profile: str = "tiny"  # tiny or pc, see above
    cmdline: str = ""  # what a pc kernel boot adds to the console and speed options
    cdrom: Path | None = None  # an ISO in the CD drive (an installer)
    seed: Path | None = None  # the cloud-init NoCloud ISO
    firmware: str = "bios"
    efi_vars: Path | None = None  # the VM's UEFI variable store
    agent: bool = True  # the guest runs qemu-guest-agent: a boot is done when it answers

    def files(self) -> tuple[Path, ...]:
        """The read-only files QEMU opens besides the disk layers and its own directory (the
        firmware is under /usr, which every jail has)."""
        return tuple(p for p in (self.kernel, self.initrd, self.cdrom) if p is not None)


def kernel_cmdline(spec: VmSpec, facts: HostFacts, grow_root: bool, probe: bool = False) -> str:
    args = [
        "console=ttyS0", "root=/dev/vda", "rw", "quiet", "panic=-1",
        "tsc=reliable", "no_timer_check", f"tsc_early_khz={facts.tsc_khz}",
        f"lpj={facts.tsc_khz * 1000 // HZ}", "mitigations=off", "random.trust_cpu=on",
        "cryptomgr.notests", "8250.nr_uarts=1", "init_on_alloc=0", "audit=0",
        f"initcall_blacklist={','.join(SKIPPED_INITCALLS)}", f"vmkit.hostname={spec.name}",
    ]
    if grow_root:
        args.append("vmkit.grow=1")
    if probe:
        args.append("vmkit.probe=1")
    return " ".join(args)


def pc_cmdline(spec: VmSpec, boot: BootFiles, facts: HostFacts) -> str:
    """A distribution kernel's command line: the image's own part, the serial console, the
    VM's name as hostname (systemd reads it), and the calibrations and mitigations that cost
    emulated time for nothing. Without a NIC, nothing waits for a network: systemd's
    network-online.target would hold cloud-init until wait-online's 2-minute timeout."""
    offline = [] if spec.attachments() else ["systemd.mask=systemd-networkd-wait-online.service"]
    return " ".join([boot.cmdline, "console=tty0", "console=ttyS0,115200", "quiet",
                     f"systemd.hostname={spec.name}", *offline,
                     "tsc=reliable", "no_timer_check", f"tsc_early_khz={facts.tsc_khz}",
                     f"lpj={facts.tsc_khz * 1000 // HZ}", "mitigations=off",
                     "random.trust_cpu=on"]).strip()


def nic_mac(first: str, index: int) -> str:
    """The MAC of a VM's NIC ``index``: the VM's own for the first, derived ones after it."""
    if index == 0:
        return first
    tail = hashlib.sha256(f"{first}/{index}".encode()).digest()[:3]
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def _netdev(spec: VmSpec, index: int, nics: dict[int, str] | None) -> str:
    attached = spec.attachments()[index]
    if attached not in ("nat", "restricted"):  # a private network: what networks.py made
        if nics and index in nics:
            kind, _, rest = nics[index].partition(",")
            return f"{kind},id=net{index},{rest}"
        return f"user,id=net{index},restrict=on"  # a stand-in that leads nowhere
    opts = ["user", f"id=net{index}"]
    if attached == "restricted":
        opts.append("restrict=on")
    for f in spec.ports:
        addr = f"[{f.host_addr}]" if ":" in f.host_addr else f.host_addr
        opts.append(f"hostfwd={f.proto}:{addr}:{f.host_port}-:{f.guest_port}")
    return ",".join(opts)


def _throttling(spec: VmSpec) -> str:
    """QEMU's block throttling for --io-limit (it follows the drive across new disk layers)."""
    return ((f",throttling.iops-total={spec.io_iops}" if spec.io_iops else "")
            + (f",throttling.bps-total={spec.io_bps}" if spec.io_bps else ""))


def build_argv(spec: VmSpec, boot: BootFiles, paths: VmPaths, facts: HostFacts, mac: str,
               disk: Path, *, ram: RamFile | None = None, incoming: bool = False,
               readonly_disk: bool = False, nics: dict[int, str] | None = None) -> list[str]:
    """The QEMU command line of one VM. ``incoming``: wait for a saved state to be loaded
    (a restore or fork) instead of booting; the devices must be exactly those it was saved
    with, which holds because they are all derived from the same spec here. ``nics``: the
    netdev of each NIC on a private network, without its id (without one, a NIC that leads
    nowhere)."""
    tiny = boot.profile == "tiny"
    firmware_boots = boot.kernel is None  # else QEMU boots the kernel (its bootindex is 0)
    bus = "device" if tiny else "pci"  # virtio over MMIO on microvm, over PCI on q35
    cpu = "host" if facts.accel == "kvm" else "max"
    argv = [
        facts.qemu, *(["-L", facts.datadir] if facts.datadir else []),
        "-name", f"{spec.name},debug-threads=on",
        "-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on" if tiny else "q35",
        "-accel", facts.accel, "-cpu", cpu,
        "-smp", str(spec.cpus), "-m", f"{spec.memory_mib}M",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-sandbox", SANDBOX,
    ]
    if tiny:
        grow = spec.disk_bytes is not None and spec.disk_bytes > boot.rootfs_bytes
        argv += ["-kernel", str(boot.kernel), "-initrd", str(boot.initrd),
                 "-append", kernel_cmdline(spec, facts, grow)]
    elif boot.kernel is not None:
        argv += ["-kernel", str(boot.kernel), "-initrd", str(boot.initrd),
                 "-append", pc_cmdline(spec, boot, facts)]
    if boot.firmware == "uefi":
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={boot.efi_vars}"]
    argv += [
        "-drive", f"file={disk},if=none,id=disk0,format=qcow2,discard=unmap"
                  + (",readonly=on" if readonly_disk else "") + _throttling(spec),
        "-device", f"virtio-blk-{bus},drive=disk0" + (
            ",bootindex=0" if firmware_boots else ""),
    ]
    # The disk boots first: an empty one has nothing to boot, so the firmware goes on to the
    # installer CD, and once the OS is installed the disk boots without ejecting anything.
    if boot.cdrom is not None:
        argv += ["-drive", f"file={boot.cdrom},if=none,id=cd0,media=cdrom,readonly=on",
                 "-device", "ide-cd,drive=cd0,bus=ide.0" + (",bootindex=1" if firmware_boots
                                                             else "")]
    if boot.seed is not None:  # on virtio: Debian's cloud kernel has no AHCI driver
        argv += ["-drive", f"file={boot.seed},if=none,id=seed,format=raw,readonly=on",
                 "-device", f"virtio-blk-{bus},drive=seed"]
    argv += [
        "-chardev", f"socket,id=qmp,path={paths.qmp},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", f"socket,id=agent,path={paths.agent},server=on,wait=off",
        "-device", f"virtio-serial-{bus}",
        "-device", "virtserialport,chardev=agent,name=org.qemu.guest_agent.0",
        "-chardev", f"socket,id=console,path={paths.console},server=on,wait=off,"
                    f"logfile={paths.serial_log},logappend=on",
        "-serial", "chardev:console",
        "-device", f"virtio-rng-{bus}",
        "-pidfile", str(paths.pid),
    ]
    for i in range(len(spec.attachments())):
        argv += ["-netdev", _netdev(spec, i, nics),
                 "-device", f"virtio-net-{bus},netdev=net{i},mac={nic_mac(mac, i)}"]
    if ram is not None:
        # The id is the one QEMU gives its default RAM, so saved states load either way.
        ram_id = RAM_IDS[boot.profile]
        argv += ["-object", f"memory-backend-file,id={ram_id},size={spec.memory_mib}M,"
                            f"mem-path={ram.path},share={'on' if ram.shared else 'off'}",
                 "-machine", f"memory-backend={ram_id}"]
    if spec.display == "vnc":  # on a socket only vmkitd reaches; display.py sets the password
        argv += ([] if tiny else ["-device", "VGA"]) + ["-vnc", f"unix:{paths.vnc},password=on"]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv

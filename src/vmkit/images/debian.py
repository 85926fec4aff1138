"""Build the ``debian`` image with debootstrap from the Debian package registry.

The image is a whole-disk ext4 root (no partition table: the kernel and initrd are kept beside
it and booted directly, which saves the bootloader's emulated time) with systemd, the Debian
cloud kernel, qemu-guest-agent, openssh-server and cloud-init. It never reaches out on its own:
cloud-init reads only the NoCloud seed vmkit attaches, there is no NTP client, and DNS has no
fallback servers. The root filesystem grows to the VM's disk at every boot (cloud-init).

Files:
  vmlinuz     the kernel, as Debian ships it
  initrd.img  Debian's initramfs (it finds the root on virtio-blk by itself)
  rootfs.raw  the ext4 root filesystem, sparse
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ImageError, InvalidInputError
from ..spec import format_size, parse_size
from .tiny import Progress, run_tool

FILES = ("vmlinuz", "initrd.img", "rootfs.raw")
MIRROR = os.environ.get("VMKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
RELEASES = ("bookworm", "trixie")
BOOT = ["systemd-sysv", "udev", "dbus", "linux-image-cloud-amd64", "initramfs-tools",
        "qemu-guest-agent", "systemd-resolved", "iproute2", "netbase", "sudo"]
CLOUD = ["openssh-server", "cloud-init", "cloud-guest-utils",
         # debootstrap does not resolve virtual packages: cloud-init's python3-cryptography
         # needs python3-cffi-backend-api-*, which only this package provides.
         "python3-cffi-backend"]
EXCLUDE = ["systemd-timesyncd"]  # no NTP: the guest's clock comes from the host (kvm-clock)
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
CMDLINE = "root=/dev/vda rw"
EPOCH = 1700000000  # every file's time in the image, so builds differ only where Debian does
FAKE_TIME = {**os.environ, "E2FSPROGS_FAKE_TIME": str(EPOCH)}  # e2fsprogs' own timestamps
STAGING = "/dev/shm" if os.path.isdir("/dev/shm") else None
ROOT_UUID = "3f9d8a4e-6a2b-4c1d-9e57-0b8c2d4f6a13"
HASH_SEED = "b5e2c7a1-4d3f-4e8a-a6b9-1c0d2e3f4a5b"

# Written into the root filesystem, relative to it.
CONFIG = {
    "etc/fstab": "LABEL=vmkit-root / ext4 defaults,discard,errors=remount-ro 0 1\n",
    "etc/hostname": "debian\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    # Every Ethernet NIC takes DHCP; cloud-init leaves networking alone.
    "etc/systemd/network/80-vmkit.network":
        "[Match]\nType=ether\n\n[Network]\nDHCP=yes\nLLMNR=no\nMulticastDNS=no\n",
    "etc/systemd/resolved.conf.d/vmkit.conf":
        "[Resolve]\nFallbackDNS=\nLLMNR=no\nMulticastDNS=no\n",
    "etc/cloud/cloud.cfg.d/90-vmkit.cfg":
        "# vmkit attaches a NoCloud seed; probing for cloud metadata would only time out.\n"
        "datasource_list: [NoCloud, None]\n"
        "network: {config: disabled}\n"
        "manage_etc_hosts: true\n"
        # Under TCG every module costs seconds: run only those a VM here can use, and make
        # one host key (RSA-3072 alone takes about 20 s to generate).
        "ssh_genkeytypes: [ed25519]\n"
        "cloud_init_modules: [seed_random, bootcmd, write-files, growpart, resizefs,\n"
        "  set_hostname, update_hostname, update_etc_hosts, users-groups, ssh]\n"
        "cloud_config_modules: [set-passwords, runcmd]\n"
        "cloud_final_modules: [package-update-upgrade-install, scripts-per-once,\n"
        "  scripts-per-boot, scripts-per-instance, scripts-user, final-message]\n",
    # The serial console logs root in, as the tiny image does: the console's socket is
    # reachable only by vmkitd's owner, who controls the VM anyway.
    "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf":
        "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud "
        "115200,57600,38400,9600 %I $TERM\n",
}
ENABLE = ["systemd-networkd.service", "systemd-resolved.service"]
# Periodic upkeep that costs a TCG guest a minute of boot (e2scrub_reap alone took 50 s) and
# that a VM's owner can turn back on with 'systemctl unmask'.
MASK = ["e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer",
        "apt-daily-upgrade.timer", "man-db.timer"]


@dataclass(frozen=True)
class DebianOptions:
    release: str = "bookworm"
    size: int = 4 << 30
    packages: tuple[str, ...] = ()
    minimal: bool = False  # no ssh, no cloud-init: a quick build that still boots to the agent

    def includes(self) -> list[str]:
        return BOOT + ([] if self.minimal else CLOUD) + list(self.packages)


def debian_options(release: str = "bookworm", size: str = "4G", packages: str = "",
                   minimal: bool = False) -> DebianOptions:
    """Validate ``vmkit image build debian``'s options."""
    if release not in RELEASES:
        raise InvalidInputError(f"unknown Debian release {release!r}: use {' or '.join(RELEASES)}")
    nbytes = parse_size(size, "image size")
    if not 1 << 30 <= nbytes <= 1 << 40:
        raise InvalidInputError(f"image size {size} is out of range: use 1G to 1T")
    names = tuple(p.strip() for p in packages.split(",") if p.strip())
    for name in names:
        if not PACKAGE_RE.fullmatch(name):
            raise InvalidInputError(f"invalid package name {name!r}: Debian package names are "
                                    "lower-case letters, digits and + - .")
    return DebianOptions(release, nbytes, names, minimal)


def build_debian(out: Path, cache: Path, progress: Progress,
                 options: DebianOptions) -> dict[str, Any]:
    """Build the image's files into the empty directory ``out``; returns the image's meta."""
    for tool in ("debootstrap", "mkfs.ext4", "chroot"):
        if not shutil.which(tool):
            raise ImageError(f"'{tool}' is not installed; install it with 'apt-get install "
                             f"debootstrap e2fsprogs' and retry")
    if os.geteuid() != 0:
        raise ImageError("building the debian image needs root (debootstrap installs packages "
                         "as root): run vmkitd as root")
    debs = cache / f"debs-{options.release}"
    debs.mkdir(parents=True, exist_ok=True)
    # The root is built in memory: on tmpfs, directories list their entries in the order they
    # were made, which mkfs.ext4 -d follows, so the same packages give the same disk. (On a
    # disk filesystem the order comes from a per-filesystem hash seed.)
    with tempfile.TemporaryDirectory(prefix=f"vmkit-debian-{os.getpid()}-", dir=STAGING) as tmp:
        root = Path(tmp, "root")
        try:
            _debootstrap(root, debs, options, progress)
        finally:
            unmount_under(root)  # what a stopped debootstrap left mounted in the chroot
        progress(0.82, "configuring the system")
        _configure(root)
        progress(0.86, "writing the ext4 disk")
        kernel = max((root / "boot").glob("vmlinuz-*"))
        shutil.copyfile(kernel, out / "vmlinuz")
        shutil.copyfile(root / "boot" / kernel.name.replace("vmlinuz", "initrd.img"),
                        out / "initrd.img")
        _clamp_times(root)
        run_tool(["mkfs.ext4", "-q", "-F", "-L", "vmkit-root", "-U", ROOT_UUID,
              "-E", f"root_owner=0:0,hash_seed={HASH_SEED}", "-d", str(root),
              str(out / "rootfs.raw"), str(options.size >> 10) + "K"], env=FAKE_TIME)
        _clamp_ctimes(out / "rootfs.raw")
    progress(0.95, "checking the image")
    return {"files": list(FILES), "rootfs_bytes": options.size, "format": "raw",
            "profile": "pc", "cmdline": CMDLINE, "agent": True, "cloud_init": not options.minimal,
            "release": options.release, "packages": list(options.packages),
            "kernel": kernel.name.removeprefix("vmlinuz-"),
            "description": f"Debian {options.release}, {format_size(options.size)} disk"
                           + (", minimal" if options.minimal else "")}


# Phases of debootstrap's output, with the share of the whole build each ends at.
PHASES = [("I: Retrieving", 0.35, "downloading"), ("I: Extracting", 0.45, "extracting"),
          ("I: Unpacking", 0.65, "unpacking"), ("I: Configuring", 0.80, "configuring")]


def _debootstrap(root: Path, debs: Path, options: DebianOptions, progress: Progress) -> None:
    argv = ["debootstrap", "--variant=minbase", "--components=main",
            f"--include={','.join(options.includes())}", f"--exclude={','.join(EXCLUDE)}",
            f"--cache-dir={debs}", options.release, str(root), MIRROR]
    progress(0.02, f"debootstrap {options.release} from {MIRROR}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "SOURCE_DATE_EPOCH": str(EPOCH)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    tail: list[str] = []
    counts = dict.fromkeys((p for p, _, _ in PHASES), 0)
    start = 0.02
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line.strip()])[-3:]
            for i, (prefix, end, what) in enumerate(PHASES):
                if line.startswith(prefix):
                    counts[prefix] += 1
                    begin = PHASES[i - 1][1] if i else start
                    share = 1 - 1 / (1 + counts[prefix] / 60)  # approaches the phase's end
                    name = line[len(prefix):].strip().split()[0].rstrip(".")
                    progress(begin + (end - begin) * share, f"{what} {name}")
        proc.wait()
    finally:
        if proc.returncode is None:  # cancelled: stop debootstrap and everything it started
            os.killpg(proc.pid, 9)
            proc.wait()
    if proc.returncode != 0:
        log = root / "debootstrap/debootstrap.log"
        detail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else tail
        raise ImageError(f"debootstrap failed: {' / '.join(detail)}")


def clean_staging() -> None:
    """Remove the build roots of daemons that died while building (their pid is in the
    name), so that a crash does not hold on to memory."""
    for leftover in Path(STAGING or tempfile.gettempdir()).glob("vmkit-debian-*-*"):
        pid = leftover.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            unmount_under(leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def unmount_under(path: Path) -> None:
    """Unmount every filesystem mounted at or below ``path``, deepest first, so that removing
    ``path`` cannot reach into the host's /proc or /sys."""
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")),
                        key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _configure(root: Path) -> None:
    for rel, text in CONFIG.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ENABLE:
        link = wants / unit
        link.unlink(missing_ok=True)
        link.symlink_to(f"/lib/systemd/system/{unit}")
    for unit in MASK:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    # What must differ between VMs is made at each VM's first boot, not baked in.
    (root / "etc/machine-id").write_text("uninitialized\n")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # cloud-init makes the VM's own host keys
    # Logs and caches of the build itself.
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "var/log/*.log",
                    "var/cache/ldconfig/aux-cache",
                    "var/log/apt/*", "var/cache/debconf/*-old", "debootstrap"):
        for path in root.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _clamp_times(root: Path) -> None:
    for path in (root, *root.rglob("*")):
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)


def _clamp_ctimes(disk: Path) -> None:
    """mkfs.ext4 -d copies each file's ctime, which no one can set: the time it was unpacked.
    Set them all to EPOCH, so that only the packages decide the disk's bytes. mkfs numbers
    the inodes in order from 12 (11 is lost+found, 2 the root)."""
    header = subprocess.run(["dumpe2fs", "-h", str(disk)], capture_output=True, text=True,
                            check=True).stdout
    count, free = (int(re.search(rf"{f}:\s+(\d+)", header).group(1))  # type: ignore[union-attr]
                   for f in ("Inode count", "Free inodes"))
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(EPOCH))
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
        script.writelines(f"sif <{i}> ctime {stamp}\n"
                          for i in [2, 11, *range(12, count - free + 1)])
        script.flush()
        run_tool(["debugfs", "-w", "-f", script.name, str(disk)], env=FAKE_TIME)

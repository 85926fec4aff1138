"""Build the default ``tiny`` image from Debian packages, with no root and no internet beyond
the package registry.

The image is three files:
  vmlinux      the Debian cloud kernel, uncompressed, booted through its PVH entry point
  initrd.cpio  busybox + the virtio modules; it mounts the root disk and switches to it
  rootfs.raw   ext4 root: busybox, qemu-guest-agent and its libraries, resize2fs, GNU wget,
               init scripts
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ..errors import ImageError
from .cpio import write_cpio
from .kernel import extract_vmlinux

Progress = Callable[[float, str], None]

KERNEL_META = "linux-image-cloud-amd64"
ROOTS = ["busybox-static", "qemu-guest-agent", "e2fsprogs", "netcat-openbsd", "perl-base",
         "wget"]
# Debian builds busybox's wget without FEATURE_WGET_TIMEOUT, yet its option parser still takes
# -T and stores the number through a null pointer: "wget -T 5 URL" segfaults (exit 139) before
# connecting, whatever the URL. GNU wget replaces it. busybox-static's shell runs its own
# applets before any file in PATH, so the applet is renamed in the binary's sorted name table
# (the order stays: "wc" < "wgex" < "which"), and the shell finds /usr/bin/wget. Debian's
# dynamic busybox as /bin/sh would find it too, but costs ~130 ms a shell start under TCG:
# every 'vmkit exec' runs one.
BROKEN_APPLETS = {b"\0wc\0wget\0which\0": b"\0wc\0wgex\0which\0"}
# Follow dependencies only into shared libraries: the guest needs the agent's libraries, not the
# packaging machinery (perl, dpkg, init-system-helpers) its Debian package also depends on.
LIBRARY_PREFIXES = ("lib", "zlib", "gcc-")
# What the microvm machine needs, in load order (each needs the ones before it), and virtio
# over PCI for the same disk booted elsewhere (a libvirt export runs on a PC machine).
MODULES = [
    "virtio_ring", "virtio", "virtio_mmio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
    "virtio_pci", "virtio_blk", "failover", "net_failover",
    "virtio_net", "virtio_console", "virtio-rng",
]
# Loaded from the root disk after the agent is up, off the boot's critical path: the ACPI
# power button (so `vmkit stop` works without the agent) and the input events it sends.
LATE_MODULES = ["button", "evdev"]
MODULE_SIG_MAGIC = b"~Module signature appended~\n"
ROOTFS_SIZE = "1G"  # sparse: the file holds ~40 MiB; a VM asked for more grows it at boot
LIB_DIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"]
# Beyond busybox: the agent, resize2fs to grow the root disk, a netcat that speaks UDP
# (as "netcat": "nc" stays busybox's), perl alone (no modules) for the two system calls a
# fork's new identity needs (identity.py), the shell, and an HTTP client that works.
BINARIES = {"usr/sbin/qemu-ga": "usr/sbin/qemu-ga", "sbin/resize2fs": "sbin/resize2fs",
            "bin/nc.openbsd": "usr/bin/netcat", "usr/bin/perl": "usr/bin/perl",
            "usr/bin/wget": "usr/bin/wget"}


def run_tool(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a build tool; its last lines of output become the error if it fails."""
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ImageError(f"{argv[0]} failed while building the image: {' / '.join(detail)}")
    return result.stdout


def _direct_depends(packages: list[str]) -> set[str]:
    out = run_tool(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *packages])
    deps = set()
    for line in out.splitlines():
        kind, _, name = line.strip().partition(": ")
        if kind in ("Depends", "PreDepends", "|Depends") and not name.startswith("<"):
            deps.add(name)
    return deps


def resolve_packages() -> list[str]:
    """The exact package set: the versioned kernel, the roots, and their library closure."""
    kernel = sorted(d for d in _direct_depends([KERNEL_META]) if d.startswith("linux-image-"))
    if not kernel:
        raise ImageError(
            f"apt cannot resolve {KERNEL_META}; run 'apt-get update' (as root) and try again"
        )
    seen: set[str] = set()
    todo = set(ROOTS)
    while todo:
        seen |= todo
        todo = {d for d in _direct_depends(sorted(todo)) if d.startswith(LIBRARY_PREFIXES)} - seen
    return sorted(seen) + kernel[-1:]


def download(packages: list[str], cache: Path) -> list[Path]:
    """Fetch the packages with ``apt-get download`` into ``cache`` (kept for rebuilds)."""
    cache.mkdir(parents=True, exist_ok=True)
    uris = run_tool(["apt-get", "download", "--print-uris", *packages])
    files = [line.split()[1] for line in uris.splitlines() if line.startswith("'")]
    missing = [f for f in files if not (cache / f).exists()]
    if missing:
        run_tool(["apt-get", "download", "-q", *packages], cwd=cache)
    return [cache / f for f in files]


def _install_busybox(bb_root: Path, dest: Path) -> None:
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    binary = bb_root / "bin/busybox"
    data = binary.read_bytes()
    for name, renamed in BROKEN_APPLETS.items():
        if data.count(name) != 1:
            raise ImageError(f"{binary} does not list its applets as vmkit expects: this "
                             "busybox-static is not the one the tiny image was made for")
        data = data.replace(name, renamed)
    _put(dest, "bin/busybox", data, 0o755)
    for applet in run_tool([str(bb_root / "bin/busybox"), "--list-full"]).split():
        link = dest / applet
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")


def _guest_file(name: str) -> bytes:
    return resources.files("vmkit.images").joinpath("guest", name).read_bytes()


def _put(dest: Path, rel: str, data: bytes, mode: int = 0o644) -> None:
    path = dest / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def _kernel_modules(unpacked: Path) -> dict[str, Path]:
    return {p.stem: p for p in (unpacked / "lib/modules").rglob("*.ko")}


def _copy_modules(unpacked: Path, names: list[str], dest: Path) -> None:
    found = _kernel_modules(unpacked)
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name not in found:
            raise ImageError(f"the kernel package has no module {name}.ko")
        (dest / f"{name}.ko").write_bytes(strip_signature(found[name].read_bytes()))


def _assemble_rootfs(unpacked: Path, rootfs: Path) -> None:
    _install_busybox(unpacked, rootfs)
    _copy_modules(unpacked, LATE_MODULES, rootfs / "lib/modules/vmkit")
    for rel in LIB_DIRS:
        if (unpacked / rel).exists():
            shutil.copytree(unpacked / rel, rootfs / rel, symlinks=True, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("gconv", "*.a"))
    for src, dst in BINARIES.items():
        (rootfs / dst).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / dst).unlink(missing_ok=True)  # replaces a busybox applet of the same name
        shutil.copy2(unpacked / src, rootfs / dst)
    for d in ["proc", "sys", "dev", "run", "tmp", "root", "etc/init.d", "var/log"]:
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "var/run").symlink_to("/run")
    (rootfs / "tmp").chmod(0o1777)
    _put(rootfs, "etc/inittab", _guest_file("inittab"))
    _put(rootfs, "etc/init.d/rcS", _guest_file("rcS"), 0o755)
    _put(rootfs, "etc/udhcpc.script", _guest_file("udhcpc.script"), 0o755)
    _put(rootfs, "etc/profile", _guest_file("profile"))
    _put(rootfs, "usr/lib/vmkit/identity", _guest_file("identity"), 0o755)
    (rootfs / "sbin/shutdown").unlink(missing_ok=True)
    _put(rootfs, "sbin/shutdown", _guest_file("shutdown"), 0o755)
    # busybox acpid runs /etc/acpi/PWRF/00000080 when the power button is pressed.
    _put(rootfs, "etc/acpi/PWRF/00000080", b"#!/bin/sh\nexec poweroff\n", 0o755)
    _put(rootfs, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    _put(rootfs, "etc/shadow", b"root::19000:0:99999:7:::\n", 0o600)
    _put(rootfs, "etc/group", b"root:x:0:\n")
    _put(rootfs, "etc/hosts", b"127.0.0.1 localhost\n")
    # glibc's default without this file asks DNS before /etc/hosts, even for "localhost".
    _put(rootfs, "etc/nsswitch.conf", b"hosts: files dns\n")
    _put(rootfs, "etc/os-release", b'NAME="vmkit tiny"\nID=vmkit-tiny\n')
    # Check with the guest's own loader that every library each binary needs is there.
    for binary in BINARIES.values():
        listing = run_tool([str(unpacked / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                        "--library-path", ":".join(str(rootfs / d) for d in LIB_DIRS[:2]),
                        "--list", str(rootfs / binary)])
        if "not found" in listing:
            raise ImageError(f"{binary} is missing libraries in the image: {listing}")


def _assemble_initrd(unpacked: Path, initrd: Path) -> None:
    (initrd / "bin").mkdir(parents=True)
    shutil.copy2(unpacked / "bin/busybox", initrd / "bin/busybox")
    _put(initrd, "init", _guest_file("init"), 0o755)
    _copy_modules(unpacked, MODULES, initrd / "modules")


def strip_signature(module: bytes) -> bytes:
    """Drop a module's appended signature. Checking it (SHA-256 + RSA) costs every boot time
    under TCG and proves nothing here: the module comes from the same package as the kernel,
    whose digest the image store checks. The kernel loads unsigned modules (no SIG_FORCE)."""
    if not module.endswith(MODULE_SIG_MAGIC):
        return module
    # struct module_signature (12 bytes, sig_len big-endian in its last 4) precedes the magic.
    end = len(module) - len(MODULE_SIG_MAGIC)
    sig_len = int.from_bytes(module[end - 4 : end], "big")
    return module[: end - 12 - sig_len]


def build_tiny(out: Path, cache: Path, progress: Progress) -> None:
    """Build the image's files into the empty directory ``out``."""
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "mkfs.ext4", "lz4"):
        if not shutil.which(tool):
            raise ImageError(f"'{tool}' is not installed; install it (see the README) and retry")
    progress(0.02, "resolving Debian packages")
    packages = resolve_packages()
    progress(0.10, f"downloading {len(packages)} packages")
    debs = download(packages, cache)
    with tempfile.TemporaryDirectory(prefix="vmkit-build-", dir=out.parent) as tmp:
        unpacked, rootfs, initrd = Path(tmp, "pkgs"), Path(tmp, "rootfs"), Path(tmp, "initrd")
        for i, deb in enumerate(debs):
            progress(0.35 + 0.35 * i / len(debs), f"unpacking {deb.name.split('_')[0]}")
            run_tool(["dpkg-deb", "-x", str(deb), str(unpacked)])
        progress(0.72, "extracting the kernel")
        bzimage = next((unpacked / "boot").glob("vmlinuz-*"))
        extract_vmlinux(bzimage, out / "vmlinux")
        progress(0.80, "assembling the root filesystem")
        _assemble_rootfs(unpacked, rootfs)
        _assemble_initrd(unpacked, initrd)
        with open(out / "initrd.cpio", "wb") as f:
            write_cpio(initrd, f)
        progress(0.90, "writing the ext4 disk")
        # A fixed UUID and hash seed keep the build repeatable for the same packages.
        # Inode tables and journal are zeroed now, not by the guest kernel's lazyinit thread
        # at every VM's first boot; a fixed UUID and hash seed keep the build repeatable.
        run_tool(["mkfs.ext4", "-q", "-F", "-L", "vmkit-root",
              "-U", "8c5a3c56-3f1b-4c36-9f7e-6b1f5f0e7a11",
              "-E", "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,"
                    "hash_seed=2f1e0c59-2c47-4a2a-8f38-4b0f3c1a9d21",
              "-d", str(rootfs), str(out / "rootfs.raw"), ROOTFS_SIZE])
    progress(1.0, "image built")

"""QEMU in a jail of its own when vmkitd runs as root, in the manner of Firecracker's jailer.

Each QEMU runs as the unprivileged user ``vmkit-qemu`` (created on first use), in its own PID
namespace (it sees no other process) and its own mount namespace whose root holds only the
system's programs and libraries (read-only), a few devices, a small /tmp, and this VM's own
files: its directory, the layers of its disk and its boot files. Another VM's disks,
VMKIT_HOME/state.db and the API token are not hidden by permissions: they are not there. On top
of that QEMU applies its own seccomp filter (``-sandbox``, see argv.py).

This module is vmkitd's side: who QEMU runs as and what it sees. ``jailer.py`` is the part
that runs inside the namespaces, started in QEMU's place. Files QEMU must open later (a new
disk layer at a snapshot) are handed to it as descriptors: their paths are not in the jail.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import disks


USER = "vmkit-qemu"
JAILER = Path(__file__).with_name("jailer.py")


@dataclass(frozen=True)
class Jail:
    """How QEMUs of one vmkitd are jailed. ``root``: an empty directory that the jail's root
    is mounted on, inside the jail's namespace only (on the host it stays empty)."""
    root: Path
    uid: int
    gid: int

    def command(self, qemu_argv: list[str], files: Iterable[tuple[Path, bool]],
                devices: Iterable[str] = (), groups: Iterable[int] = (),
                status: Path | None = None) -> list[str]:
        """``qemu_argv`` wrapped to run jailed, seeing ``files`` (path, writable) and
        /dev/``devices`` besides the system's programs, with extra ``groups`` (/dev/kvm's);
        QEMU's exit code is written to ``status`` when it ends."""
        options = ["--root", str(self.root), "--uid", str(self.uid), "--gid", str(self.gid),
                   "--groups", ",".join(map(str, groups))]
        options += ["--status", str(status)] if status else []
        options += [a for d in devices for a in ("--dev", d)]
        options += [a for p, w in files for a in ("--rw" if w else "--ro", str(p))]
        return [sys.executable, "-I", "-S", str(JAILER), *options, "--", *qemu_argv]

    def give(self, *paths: Path) -> None:
        """Make ``paths`` QEMU's: it writes to them (inside the jail, nobody else's are)."""
        for path in paths:
            os.chown(path, self.uid, self.gid)


def for_host(root: Path) -> Jail | None:
    """The jail QEMUs get on this host, or None when vmkitd is not root (an unprivileged
    vmkitd cannot switch users, and QEMU then runs as vmkitd's own user, sandboxed by seccomp)
    or VMKIT_JAIL=0."""
    if os.geteuid() != 0 or os.environ.get("VMKIT_JAIL") == "0":
        return None
    root.mkdir(mode=0o700, exist_ok=True)
    uid, gid = qemu_user()
    return Jail(root, uid, gid)


def qemu_user() -> tuple[int, int]:
    """The uid and gid of the QEMU user, made if missing (a system user with no home and no
    login shell)."""
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        "--comment", "vmkit's QEMU processes", USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(USER)
    return entry.pw_uid, entry.pw_gid


def vm_files(vm_dir: Path, boot_files: Iterable[Path], disk: Path, disk_writable: bool = True,
             ram: Path | None = None) -> list[tuple[Path, bool]]:
    """What one VM's QEMU sees: (path, writable). The layers below the top of its disk, and
    the image at the bottom, are read-only. A RAM file is writable: QEMU 7.2 opens it so even
    when it maps it copy-on-write (a fork), which never changes the file."""
    files = [(vm_dir, True), (disk, disk_writable)]
    below = disks.backing_file(disk)
    while below is not None:
        files.append((below, False))
        below = disks.backing_file(below) if below.suffix == ".qcow2" else None
    files += [(p, False) for p in boot_files]
    if ram is not None:
        files.append((ram, True))
    return files


def devices(argv: list[str]) -> tuple[list[str], list[int]]:
    """The devices under /dev that QEMU ``argv`` needs besides the basic ones, and the groups
    that open them: /dev/net/tun for TAP NICs, /dev/kvm (and its group) under KVM."""
    names, groups = [], []
    if any(a.startswith("tap,") for a in argv):
        names.append("net/tun")
    if argv[argv.index("-accel") + 1] == "kvm":
        names.append("kvm")
        groups.append(os.stat("/dev/kvm").st_gid)
    return names, groups


def program_files(argv: list[str]) -> list[tuple[Path, bool]]:
    """The QEMU of ``argv`` itself when it lives outside /usr (VMKIT_QEMU): its whole prefix,
    binary and firmware, read-only. The system's QEMU is in the jail already."""
    prefix = Path(argv[0]).resolve().parent.parent
    return [] if prefix == Path("/usr") else [(prefix, False)]


def userfaultfd_allowed() -> bool:
    """Whether an unprivileged QEMU may use userfaultfd (post-copy migration needs it)."""
    try:
        return Path("/proc/sys/vm/unprivileged_userfaultfd").read_text().strip() == "1"
    except OSError:
        return False


def switch_dirs(argv: list[str]) -> list[Path]:
    """The directories of the network switches ``argv``'s NICs send to (networks.py). The
    directory, not the socket: a restarted vmkitd makes a new socket there."""
    return [Path(opt.removeprefix("remote.path=")).parent
            for arg in argv for opt in arg.split(",") if opt.startswith("remote.path=")]

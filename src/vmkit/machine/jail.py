"""QEMU in a jail of its own when vmkitd runs as root, in the manner of Firecracker's jailer.

Each QEMU runs as the unprivileged user ``vmkit-qemu`` (created on first use), in its own PID
namespace (it sees no other process) and its own mount namespace whose root holds only the
system's programs and libraries (read-only), a few devices, a small /tmp, and this VM's own
files: its directory, the layers of its disk and its boot files. Another VM's disks,
VMKIT_HOME/state.db and the API token are not hidden by permissions: they are not there. On top
of that QEMU applies its own seccomp filter (``-sandbox``, see argv.py).

vmkitd starts ``python -m vmkit.machine.jail SPEC -- QEMU...`` (``main`` below). It makes the new
namespaces and forks: the child, the first process of the new PID namespace, builds the root,
pivots into it, drops to the user and execs QEMU; the parent waits for it and exits as it did
(util-linux's ``unshare --fork`` fails to pass on death by a signal, which vmkit reports). Files QEMU must open later (a new disk layer at a snapshot) are handed
to it as descriptors, since their paths do not exist inside the jail.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import pwd
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import disks


USER = "vmkit-qemu"
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")


@dataclass(frozen=True)
class Jail:
    """How QEMUs of one vmkitd are jailed. ``root``: an empty directory that the jail's root
    is mounted on, inside the jail's namespace only (on the host it stays empty)."""
    root: Path
    uid: int
    gid: int

    def command(self, qemu_argv: list[str], files: Iterable[tuple[Path, bool]],
                devices: Iterable[str] = (), groups: Iterable[int] = ()) -> list[str]:
        """``qemu_argv`` wrapped to run jailed, seeing ``files`` (path, writable) and
        /dev/``devices`` besides the system's programs, with extra ``groups`` (/dev/kvm's)."""
        spec = {"root": str(self.root), "uid": self.uid, "gid": self.gid,
                "groups": list(groups), "files": [[str(p), w] for p, w in files],
                "devices": list(devices)}
        return [sys.executable, "-m", __name__, json.dumps(spec), "--", *qemu_argv]

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


# --- inside the namespaces ------------------------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MNT_DETACH = 2
MS_PRIVATE = 1 << 18
CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
PR_SET_PDEATHSIG = 1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"jail: {what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None
           ) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {source} on {target}")


def _bind(source: str, root: str, writable: bool) -> None:
    """Make ``source`` appear at the same path under ``root``."""
    target = root + source
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    if not writable:
        _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def _build_root(spec: dict) -> None:
    root = spec["root"]
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for name in SYSTEM_DIRS:
        if os.path.islink(f"/{name}"):  # merged /usr: /bin -> usr/bin
            os.symlink(os.readlink(f"/{name}"), f"{root}/{name}")
        elif os.path.isdir(f"/{name}"):
            _bind(f"/{name}", root, writable=False)
    if os.path.exists("/etc/ld.so.cache"):  # where the dynamic linker finds QEMU's libraries
        _bind("/etc/ld.so.cache", root, writable=False)
    os.mkdir(f"{root}/dev", 0o755)
    _mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for dev in DEVICES + tuple(spec["devices"]):
        _bind(f"/dev/{dev}", root, writable=True)
    os.mkdir(f"{root}/proc", 0o555)
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir(f"{root}/tmp", 0o1777)
    _mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           "mode=1777,size=16m")
    for path, writable in spec["files"]:
        _bind(path, root, writable)


def _enter_root(root: str) -> None:
    """Make ``root`` the root, and let go of the old one entirely."""
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        os.chroot(".")  # no escape from it once QEMU has dropped to an unprivileged user
    else:
        _check(_libc.syscall(number, b".", b"."), "pivot_root")
        _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
    _mount("none", "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def main(args: list[str]) -> None:
    spec, qemu_argv = json.loads(args[0]), args[2:]
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
        pid = os.fork()
    except OSError as e:
        sys.exit(f"vmkit jail: {e}")
    if pid == 0:
        _run_qemu(spec, qemu_argv)
    for passed in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # on to QEMU
        signal.signal(passed, lambda sig, _frame: os.kill(pid, sig))
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):  # die the same way, so that vmkitd reports the signal
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.waitstatus_to_exitcode(status))


def _run_qemu(spec: dict, qemu_argv: list[str]) -> None:
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here leaks out
        os.umask(0o022)  # the directories made for the jail's root are the user's to walk
        _build_root(spec)
        _enter_root(spec["root"])
        os.umask(0o077)  # what QEMU makes (its sockets) is private
        os.setgroups(spec["groups"])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
        # After setuid, which clears it: QEMU dies with the process vmkitd watches.
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL), "prctl")
        os.execv(qemu_argv[0], qemu_argv)
    except OSError as e:
        print(f"vmkit jail: {e}", file=sys.stderr)
    os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])

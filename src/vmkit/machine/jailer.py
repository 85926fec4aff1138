"""The part of QEMU's jail (jail.py) that runs inside its namespaces; a script of its own.

vmkitd starts it as ``python -I -S jailer.py --root DIR --uid U --gid G [--groups G,..]
[--dev NAME]... [--ro PATH]... [--rw PATH]... [--status FILE] -- QEMU ARGV...``: isolated
mode, no site packages, nothing imported but a few standard modules, so that it costs QEMU's
start little.

It makes a PID and a mount namespace and forks. The child, the first process of the new PID
namespace, mounts a tmpfs root holding /usr (read-only), a few devices, /proc, a small /tmp and
the given paths at their own places, pivots into it, drops to the user and execs QEMU. The
parent waits and exits as QEMU did (util-linux's ``unshare --fork`` fails to pass on a death
by signal, which vmkit reports), having written QEMU's exit code to the status FILE for a
vmkitd that is not its parent (one restarted since QEMU started).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

# Not typing.TYPE_CHECKING: importing typing would cost QEMU's start more than the rest of
# this script together. Type checkers take any TYPE_CHECKING to be true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn, NotRequired, TypedDict

    class JailSpec(TypedDict):
        """The options before ``--``."""

        groups: list[int]
        dev: list[str]
        binds: list[tuple[str, bool]]  # (path, writable), in order
        root: NotRequired[str]
        uid: NotRequired[int]
        gid: NotRequired[int]
        status: NotRequired[str]

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
PR_SET_PDEATHSIG = 1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

_libc = ctypes.CDLL(None, use_errno=True)


def parse(args: list[str]) -> tuple[JailSpec, list[str]]:
    """The options before ``--`` (see above) and QEMU's argv after it."""
    spec: JailSpec = {"groups": [], "dev": [], "binds": []}
    i = 0
    while args[i] != "--":
        key, value = args[i].removeprefix("--"), args[i + 1]
        if key == "dev":
            spec["dev"].append(value)
        elif key in ("ro", "rw"):
            spec["binds"].append((value, key == "rw"))
        elif key == "groups":
            spec["groups"] = [int(g) for g in value.split(",") if g]
        elif key == "uid":
            spec["uid"] = int(value)
        elif key == "gid":
            spec["gid"] = int(value)
        elif key == "root":
            spec["root"] = value
        elif key == "status":
            spec["status"] = value
        i += 2
    return spec, args[i + 1:]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"jail: {what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
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


def _build_root(spec: JailSpec) -> None:
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
    for dev in DEVICES + tuple(spec["dev"]):
        _bind(f"/dev/{dev}", root, writable=True)
    os.mkdir(f"{root}/proc", 0o555)
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir(f"{root}/tmp", 0o1777)
    _mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           "mode=1777,size=16m")
    for path, writable in spec["binds"]:
        _bind(path, root, writable)


def _enter_root(root: str) -> None:
    """Make ``root`` the root, and let go of the old one entirely."""
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        os.chroot(".")  # no escape from it once QEMU has dropped to an unprivileged user
    else:
        _check(_libc.syscall(number, b".", b"."), "pivot_root")
        _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
    _mount("none", "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _status_file(path: str | None) -> int | None:
    """The status file, made anew and opened now, while no QEMU runs in its directory to put
    a symlink there; written through this descriptor even once the directory is removed."""
    if path is None:
        return None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)


def main(args: list[str]) -> NoReturn:
    spec, qemu_argv = parse(args)
    try:
        status_fd = _status_file(spec.get("status"))
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
        pid = os.fork()
    except OSError as e:
        sys.exit(f"vmkit jail: {e}")
    if pid == 0:
        _run_qemu(spec, qemu_argv)
    for passed in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # on to QEMU
        signal.signal(passed, lambda sig, _frame: os.kill(pid, sig))
    _, status = os.waitpid(pid, 0)
    if status_fd is not None:
        os.write(status_fd, b"%d\n" % os.waitstatus_to_exitcode(status))
    if os.WIFSIGNALED(status):  # die the same way, so that vmkitd reports the signal
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.waitstatus_to_exitcode(status))


def _run_qemu(spec: JailSpec, qemu_argv: list[str]) -> NoReturn:
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here leaks out
        os.umask(0o022)  # the directories made for the jail's root are the user's to walk
        _build_root(spec)
        _enter_root(spec["root"])
        os.umask(0o177)  # what QEMU makes (its sockets) is 0600: private, not executable
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

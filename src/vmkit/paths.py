"""Where vmkit keeps things. Every file name under VMKIT_HOME is spelled here and nowhere else.

    VMKIT_HOME/                     ~/.local/share/vmkit, or /var/lib/vmkit for root
      state.db                      SQLite (WAL): VMs, images, snapshots, templates, operations
      run/vmkitd.sock               the daemon's API socket (directory is 0700)
      run/vmkitd.pid, vmkitd.log, token
      run/jail/                     empty: each jailed QEMU's root is mounted here in its namespace
      hosts.json                    other vmkit hosts: URL, token, CA
      images/<sha256>/              a content-addressed image, read-only once stored
      cache/debs/                   Debian packages fetched for image builds
      vms/<name>/                   one VM: sockets, logs, pid, launched spec, exit status
      disks/<id>.qcow2              disk layers: each VM's writable top, and the frozen layers
                                    of snapshots below it (a chain ends in an image's rootfs)
      transfers/<id>/               an export or import being made (emptied when vmkitd starts)
      snapshots/<id>/               a snapshot's memory: state (QEMU's saved state), and once
                                    forked: ram (guest RAM as a file) + devices (the rest)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def default_home() -> Path:
    if env := os.environ.get("VMKIT_HOME"):
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/vmkit")
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share"
    return Path(data) / "vmkit"


class HomePaths:
    # A plain class, not a dataclass: `vmkit ls` imports this, and dataclasses costs it 15 ms.
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def db(self) -> Path:
        return self.root / "state.db"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def socket(self) -> Path:
        return self.run / "vmkitd.sock"

    @property
    def daemon_pid(self) -> Path:
        return self.run / "vmkitd.pid"

    @property
    def daemon_log(self) -> Path:
        return self.run / "vmkitd.log"

    @property
    def jail(self) -> Path:
        """Empty on the host: QEMU's jail mounts its root here, inside its own namespace."""
        return self.run / "jail"

    @property
    def token(self) -> Path:
        return self.run / "token"

    @property
    def hosts(self) -> Path:
        """Other vmkit hosts by name, with their tokens (see hosts.py)."""
        return self.root / "hosts.json"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def deb_cache(self) -> Path:
        return self.root / "cache" / "debs"

    @property
    def vms(self) -> Path:
        return self.root / "vms"

    def vm(self, name: str) -> VmPaths:
        return VmPaths(self.vms / name)

    @property
    def disks(self) -> Path:
        return self.root / "disks"

    def disk(self, layer: str) -> Path:
        return self.disks / f"{layer}.qcow2"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def transfers(self) -> Path:
        """Work directories of exports and imports in progress."""
        return self.root / "transfers"

    def snapshot(self, snap_id: str) -> SnapshotPaths:
        return SnapshotPaths(self.snapshots / snap_id)


class VmPaths:
    def __init__(self, dir: Path) -> None:
        self.dir = dir

    @property
    def legacy_disk(self) -> Path:
        """Where VMs made before snapshots existed kept their disk; moved to disks/ on open."""
        return self.dir / "disk.qcow2"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def agent(self) -> Path:
        return self.dir / "agent.sock"

    @property
    def console(self) -> Path:
        return self.dir / "console.sock"

    @property
    def vnc(self) -> Path:
        """The VNC server of a VM run with --display vnc; vmkitd proxies it to the browser."""
        return self.dir / "vnc.sock"

    @property
    def vnc_password(self) -> Path:
        """The VNC password QEMU has, with the pid of that QEMU (JSON)."""
        return self.dir / "vnc-password"

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def serial_times(self) -> Path:
        """When the serial log grew: "OFFSET UNIX-TIME" lines (core/logtimes.py)."""
        return self.dir / "serial.times"

    @property
    def qemu_log(self) -> Path:
        return self.dir / "qemu.log"

    @property
    def pid(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def exit_status(self) -> Path:
        """How the VM's jailed QEMU ended: its exit code (negative: the signal that killed it),
        which its jail writes (jailer.py) for a vmkitd that is not its parent (restarted since)."""
        return self.dir / "exit-status"

    @property
    def launched(self) -> Path:
        """The resolved spec and argv of the running QEMU, written before it starts."""
        return self.dir / "launched.json"

    @property
    def arriving(self) -> Path:
        """Present while the VM arrives by migration: a daemon that finds it after a restart
        removes the half-arrived VM (the source still has it)."""
        return self.dir / "arriving"

    @property
    def saving(self) -> Path:
        """Present while vmkit holds the VM paused to save it: a daemon that finds it after a
        crash resumes the guest."""
        return self.dir / "saving"


class SnapshotPaths:
    def __init__(self, dir: Path) -> None:
        self.dir = dir

    @property
    def state(self) -> Path:
        """QEMU's saved state, RAM included: what a restore loads."""
        return self.dir / "state"

    @property
    def ram(self) -> Path:
        """Guest RAM as a file that forks map copy-on-write (made on first fork)."""
        return self.dir / "ram"

    @property
    def devices(self) -> Path:
        """The device state that goes with ``ram`` (saved without RAM)."""
        return self.dir / "devices"


def new_id() -> str:
    """A fresh name for a disk layer or snapshot directory."""
    return os.urandom(8).hex()


def open_nofollow(path: Path, append: bool = False) -> BinaryIO:
    """Open a file of a VM directory, for reading or appending. A jailed QEMU's user owns that
    directory: never follow a symlink it may have put there in place of the file."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT if append else os.O_RDONLY
    return os.fdopen(os.open(path, flags | os.O_NOFOLLOW, 0o600), "ab" if append else "rb")


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` so that ``path`` holds either its old content or the new, never a mix.
    The temporary file is made anew (O_EXCL): never written through someone's symlink."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

"""Fixtures for the integration and end-to-end tests: a real vmkitd, real QEMU guests under
TCG, the real tiny image. (Unit tests use none of them.)

One VMKIT_HOME per test session; the image is built once in it (Debian packages are cached
across local runs in ~/.cache/vmkit-tests). Guests use the 'restricted' network: user-mode NAT
with no way out, port forwards only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmkit
from vmkit.machine.limits import Limits

DEB_CACHE = Path(os.environ.get("VMKIT_TEST_CACHE", Path.home() / ".cache/vmkit-tests/debs"))


class Daemon:
    """A vmkitd for one VMKIT_HOME, started and killed as a user would."""

    def __init__(self, home: Path, netns: str | None = None, **env: str) -> None:
        self.home = home
        self.netns = netns  # run it (and so its VMs) in this network namespace
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ, VMKIT_HOME=str(home), **env)

    def start(self, *args: str) -> None:
        log = open(self.home / "vmkitd-test.log", "ab")
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*inside, sys.executable, "-m", "vmkit.daemon", *args],
                                     env=self.env, stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        with vmkit.Client(home=self.home, autostart=False) as c:  # wait for this daemon
            while True:
                try:
                    c.info()
                    return
                except vmkit.DaemonError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError((self.home / "vmkitd-test.log").read_text()[-2000:]) from None
                    time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def client(self) -> vmkit.Client:
        return vmkit.Client(home=self.home, autostart=False)  # tests start their daemons

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "vmkit.cli.main", *args], env=self.env,
                              input=input, capture_output=True, timeout=timeout)


def qemu_pids(home: Path) -> list[int]:
    """The QEMU processes started for ``home``."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and str(home).encode() in cmdline:
                pids.append(int(pid))
    return pids


def kill_qemus(home: Path) -> None:
    """Kill every QEMU started for ``home`` (a failed test must not leave guests running),
    and remove their cgroups, which no vmkitd is left to release (each QEMU has its own)."""
    pids = qemu_pids(home)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # until reaped: a zombie still holds its cgroups
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    Limits(home).clean()


def clone_home(src: Path, dst: Path, copy_images: bool = False) -> None:
    """A new VMKIT_HOME with ``src``'s images (shared, or copied to be damaged) and no VMs."""
    dst.mkdir(mode=0o700)
    if copy_images:
        subprocess.run(["cp", "-a", "--sparse=always", str(src / "images"), str(dst)], check=True)
    else:
        (dst / "images").symlink_to(src / "images")
    with sqlite3.connect(src / "state.db") as a, sqlite3.connect(dst / "state.db") as b:
        a.backup(b)
        for table in ("vms", "operations", "snapshots", "templates"):
            b.execute(f"DELETE FROM {table}")


@pytest.fixture(scope="session")
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmkit-it-", dir="/tmp"))
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    (path / "cache").mkdir()
    (path / "cache" / "debs").symlink_to(DEB_CACHE)
    yield path
    kill_qemus(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(home: Path) -> Iterator[Daemon]:
    d = Daemon(home)
    d.start()
    with d.client() as c:
        if not any(i["name"] == "tiny" for i in c.list_images()):
            c.wait_operation(c.build_image("tiny")["id"])
    yield d
    d.stop()
    kill_qemus(home)


@pytest.fixture
def own_daemon(daemon: Daemon) -> Iterator:
    """Start a second daemon on a home of its own (sharing the images), free to be killed or
    misconfigured: own_daemon(copy_images=..., args=(vmkitd options), netns=(a network
    namespace to run in), **env) -> Daemon."""
    started: list[Daemon] = []

    def start(copy_images: bool = False, args: tuple[str, ...] = (), netns: str | None = None,
              **env: str) -> Daemon:
        home = Path(tempfile.mkdtemp(prefix="vmkit-it-own-", dir="/tmp"))
        home.rmdir()
        clone_home(daemon.home, home, copy_images)
        d = Daemon(home, netns, **env)
        d.start(*args)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
        kill_qemus(d.home)
        shutil.rmtree(d.home, ignore_errors=True)


@pytest.fixture
def client(daemon: Daemon) -> Iterator[vmkit.Client]:
    with daemon.client() as c:
        yield c


@pytest.fixture
def make_vm(client: vmkit.Client) -> Iterator:
    """Create VMs on the restricted network; every one is removed after the test."""
    names: list[str] = []

    def make(name: str, **kw: object) -> dict:
        names.append(name)
        kw.setdefault("network", "restricted")
        return client.create_vm(name, **kw)  # type: ignore[arg-type]

    yield make
    for name in names:
        try:
            client.remove_vm(name, force=True)
        except vmkit.NotFoundError:
            pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def demo_cluster(letter: str, hosts: int, memory_mib: int | None = None,
                 seed: Any = None) -> Iterator[Any]:
    """A demo cluster for one test module, made and removed with the code of 'vmkit cluster
    up/down'. ``letter`` names it and picks its /24 (10.ORD.PID.0), so that the clusters of
    different modules never share a name or addresses."""
    from vmkit.cluster import demo

    base = Path(tempfile.mkdtemp(prefix="vmkit-cluster-", dir="/tmp"))
    pid = os.getpid()
    lay = demo.layout(f"{letter}{pid % 100000}", hosts, f"10.{ord(letter)}.{pid % 250}.0/24",
                      base, memory_mib)
    demo.up(lay, seed)
    try:
        yield lay
    finally:
        demo.down(lay)
        shutil.rmtree(base, ignore_errors=True)

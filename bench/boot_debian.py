"""Debian image: build time, and boot to ssh-ready and to cloud-init done, vmkit vs raw QEMU.

    python bench/boot_debian.py [--runs 2] [--home PATH] [--image debian] [--build]

build (--build, off by default: minutes)
    wall time of `vmkit image build debian --force --name bench-debian` with the packages
    already in VMKIT_HOME/cache/debs (the image is built once first, untimed, if missing).

boot (2 vCPUs, 1 GiB, --network restricted)
    vmkit     `vmkit run IMAGE -d -n bench-deb-I --cpus 2 -m 1G --network restricted
              -p 127.0.0.1:PORT:22`, timed from its start. cloud-init done: the CLI's return
              (vmkitd waits for `cloud-init status --wait` through the guest agent).
    raw QEMU  the QEMU command line vmkit launched for an untimed warm-up VM (its
              launched.json), made standalone as bench/rawboot.py does: its own qcow2 overlay
              on the same image rootfs, a copy of the warm-up's NoCloud seed.iso (the overlay
              is fresh, so cloud-init runs again), its own sockets and its own hostfwd port,
              spawned as plain qemu-system-x86_64 (vmkitd runs QEMU jailed and in a cgroup).
              cloud-init done: one ssh session that waits in the guest for
              /var/lib/cloud/instance/boot-finished (checked every 0.25 s), timed from spawn.
    both      ssh-ready: a poller thread starts `ssh -o BatchMode=yes -o ConnectTimeout=2 ...
              debian@127.0.0.1 true` every 0.5 s from the start (the port is chosen here, so
              it is known at once; attempts may overlap) and records the first success. The
              vmkit VM is also timed to boot-finished with raw QEMU's ssh method, so the two
              cloud-init columns can be compared method for method.

Runs alternate vmkit / raw QEMU. Every VM and QEMU started here is removed at the end; the
daemon is stopped if this run started it (a new home, or one whose vmkitd was not running).
Guests never reach out: restricted user-mode networking (restrict=on), loopback forwards only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import vmkit

sys.path.insert(0, str(Path(__file__).parent))
from common import VMKIT, open_home, ratio, row, stop_daemon

CPUS, MEMORY = 2, "1G"
WARM = "bench-deb-warm"
BOOT_TIMEOUT = 900.0  # seconds; a Debian boot with cloud-init takes ~100 s under TCG
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "IdentitiesOnly=yes"]
BOOT_FINISHED = ("until test -f /var/lib/cloud/instance/boot-finished; do sleep 0.25; done")


def cli(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run the vmkit CLI; a failure raises with what it printed."""
    proc = subprocess.run([VMKIT, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"vmkit {' '.join(args)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ssh_argv(key: Path, port: int, command: str) -> list[str]:
    return ["ssh", *SSH_OPTS, "-i", str(key), "-p", str(port), "debian@127.0.0.1", command]


class SshPoller(threading.Thread):
    """From ``start`` on, try `ssh ... true` every ``interval`` s (overlapping attempts, a
    hung one is killed after 30 s) until one succeeds; ``ready`` is then the seconds from
    ``start``. With ``finished``, then wait over ssh for cloud-init's boot-finished file:
    ``finished`` is the seconds from ``start`` until that session returned."""

    def __init__(self, key: Path, port: int, start: float, boot_finished: bool = False,
                 interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.key, self.port, self.start_time = key, port, start
        self.want_finished, self.interval = boot_finished, interval
        self.ready: float | None = None
        self.finished: float | None = None
        self.error: str | None = None
        self._stop_event = threading.Event()
        self._procs: list[tuple[float, subprocess.Popen[bytes]]] = []

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        try:
            self._poll_ready()
            if self.want_finished and self.ready is not None:
                self._wait_finished()
        except Exception as e:  # reported by the caller
            self.error = repr(e)
        finally:
            for _, p in self._procs:
                p.kill()
                p.wait()

    def _spawn(self, command: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(ssh_argv(self.key, self.port, command),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def _poll_ready(self) -> None:
        next_try = self.start_time
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now >= next_try:
                self._procs.append((now, self._spawn("true")))
                next_try = now + self.interval
            for item in list(self._procs):
                began, p = item
                rc = p.poll()
                if rc is None and time.monotonic() - began > 30:
                    p.kill()
                    rc = p.wait()
                if rc is None:
                    continue
                self._procs.remove(item)
                if rc == 0:
                    self.ready = time.monotonic() - self.start_time
                    return
            self._stop_event.wait(0.02)

    def _wait_finished(self) -> None:
        while not self._stop_event.is_set():
            p = self._spawn(BOOT_FINISHED)
            self._procs.append((time.monotonic(), p))
            while p.poll() is None and not self._stop_event.is_set():
                self._stop_event.wait(0.02)
            self._procs.pop()
            if p.poll() == 0:
                self.finished = time.monotonic() - self.start_time
                return
            p.kill()
            p.wait()
            self._stop_event.wait(1.0)  # the session broke: try again


def remove_vm(name: str) -> None:
    subprocess.run([VMKIT, "rm", "-f", name], capture_output=True)


def running_qemus() -> int:
    """QEMU processes on this host (any user, any VMKIT_HOME): they share the CPUs."""
    count = 0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            count += comm.read_text().startswith("qemu-system")
        except OSError:
            continue
    return count


def daemon_running(home: Path) -> bool:
    with vmkit.Client(home=home) as client:
        try:
            client.info()
            return True
        except vmkit.DaemonError:
            return False


def has_image(client: vmkit.Client, name: str) -> bool:
    return any(i["name"] == name for i in client.list_images())


def ensure_image(client: vmkit.Client, name: str) -> None:
    if not has_image(client, name):
        print(f"building the debian image {name!r} (a few minutes) ...", flush=True)
        cli("image", "build", "debian", "--name", name)


def bench_build(client: vmkit.Client) -> tuple[float | None, float]:
    """(first build if the image was missing, timed rebuild with the packages cached)."""
    first = None
    if not has_image(client, "bench-debian"):
        print("building bench-debian once, so that its packages are cached ...", flush=True)
        start = time.monotonic()
        cli("image", "build", "debian", "--name", "bench-debian")
        first = time.monotonic() - start
    print("rebuilding bench-debian (packages cached) ...", flush=True)
    start = time.monotonic()
    cli("image", "build", "debian", "--force", "--name", "bench-debian")
    return first, time.monotonic() - start


def vmkit_boot(image: str, name: str, pub: Path, key: Path) -> tuple[float, float, float]:
    """(ssh ready, `vmkit run -d` returned, boot-finished over ssh), seconds from the start."""
    port = free_port()
    start = time.monotonic()
    poller = SshPoller(key, port, start, boot_finished=True)
    poller.start()
    try:
        cli("run", image, "-d", "-n", name, "--cpus", str(CPUS), "-m", MEMORY,
            "--network", "restricted", "-p", f"127.0.0.1:{port}:22", "--ssh-key", str(pub),
            timeout=BOOT_TIMEOUT)
        returned = time.monotonic() - start
        poller.join(max(0.0, start + BOOT_TIMEOUT - time.monotonic()))
    finally:
        poller.stop()
    if poller.ready is None or poller.finished is None:
        raise RuntimeError(f"VM {name}: ssh never became ready or boot-finished never seen "
                           f"({poller.error or 'timed out'})")
    return poller.ready, returned, poller.finished


class RawTemplate:
    """What a standalone copy of the warm-up VM needs: its argv, seed and backing file."""

    def __init__(self, launched: Path, keep: Path) -> None:
        info = json.loads(launched.read_text())
        self.old_dir = str(launched.parent)
        self.argv: list[str] = info["argv"]
        self.seed = keep / "seed.iso"
        shutil.copyfile(launched.parent / "seed.iso", self.seed)
        self.disk = next(a.split("file=")[1].split(",")[0] for a in self.argv
                         if a.startswith("file=") and "id=disk0" in a)
        meta = json.loads(subprocess.check_output(
            ["qemu-img", "info", "-U", "--output=json", self.disk]))
        self.backing = meta["backing-filename"]
        self.backing_format = meta.get("backing-filename-format", "raw")
        netdevs = [a for a in self.argv if a.startswith("user,")]
        if not netdevs or not all("restrict=on" in n for n in netdevs):
            raise RuntimeError(f"the warm-up VM's network is not restricted: {netdevs}")
        self.hostfwd = next(part for n in netdevs for part in n.split(",")
                            if part.startswith("hostfwd=") and part.endswith("-:22"))

    def boot(self, key: Path) -> tuple[float, float]:
        """(ssh ready, boot-finished over ssh), seconds from spawning QEMU."""
        with tempfile.TemporaryDirectory(prefix="rawboot-deb-", dir="/tmp") as tmp:
            disk = Path(tmp, "disk.qcow2")
            subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                                   self.backing, "-F", self.backing_format, str(disk)])
            shutil.copyfile(self.seed, Path(tmp, "seed.iso"))
            port = free_port()
            argv = [a.replace(f"file={self.disk},", f"file={disk},")
                    .replace(self.hostfwd, f"hostfwd=tcp:127.0.0.1:{port}-:22")
                    .replace(self.old_dir, tmp) for a in self.argv]
            start = time.monotonic()
            errors = open(Path(tmp, "qemu.log"), "wb")
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errors, stderr=errors)
            poller = SshPoller(key, port, start, boot_finished=True)
            poller.start()
            try:
                deadline = start + BOOT_TIMEOUT
                while poller.is_alive() and proc.poll() is None and time.monotonic() < deadline:
                    poller.join(0.5)
                if proc.poll() is not None:
                    tail = Path(tmp, "qemu.log").read_text(errors="replace")[-500:]
                    raise RuntimeError(f"raw QEMU exited ({proc.returncode}): {tail}")
            finally:
                poller.stop()
                proc.kill()
                proc.wait()
                errors.close()
            if poller.ready is None or poller.finished is None:
                raise RuntimeError(f"raw QEMU: ssh never became ready or boot-finished never "
                                   f"seen ({poller.error or 'timed out'})")
            return poller.ready, poller.finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="boots of each (~100 s each)")
    parser.add_argument("--home", type=Path, default=None, help="VMKIT_HOME (default: a new one)")
    parser.add_argument("--image", default="debian",
                        help="the Debian image to boot (built if missing)")
    parser.add_argument("--build", action="store_true",
                        help="also time an image rebuild with the packages cached (minutes)")
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so that the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started_daemon = args.home is None or not daemon_running(args.home)
    try:
        home, client = open_home(args.home)
    except BaseException:  # e.g. the daemon fails to list the images: stop the one started
        pidfile = (args.home or Path("/nonexistent")) / "run" / "vmkitd.pid"
        if started_daemon and pidfile.exists():
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        raise
    from vmkit.cli.provision import default_public_key

    pub = default_public_key()
    key = pub.with_suffix("")
    names = [WARM] + [f"bench-deb-{i}" for i in range(args.runs)]
    keep = Path(tempfile.mkdtemp(prefix="boot-debian-", dir="/tmp"))
    load = os.getloadavg()
    others = running_qemus()
    build: tuple[float | None, float] | None = None
    ssh_vm: list[float] = []
    done_vm: list[float] = []
    fin_vm: list[float] = []
    ssh_raw: list[float] = []
    fin_raw: list[float] = []
    try:
        existing = {v["name"] for v in client.list_vms()}
        for name in names:
            if name in existing:
                print(f"removing {name}, left over by an earlier run", flush=True)
                remove_vm(name)
        if args.build:
            build = bench_build(client)
        ensure_image(client, args.image)

        # Warm-up, not timed: its launched.json and seed.iso are raw QEMU's. It is removed
        # before the timed runs, so that no idle guest shares the CPUs with them.
        print(f"warm-up: booting {WARM} from {args.image} (about 2 minutes under TCG) ...",
              flush=True)
        cli("run", args.image, "-d", "-n", WARM, "--cpus", str(CPUS), "-m", MEMORY,
            "--network", "restricted", "-p", f"127.0.0.1:{free_port()}:22",
            "--ssh-key", str(pub), timeout=BOOT_TIMEOUT)
        raw = RawTemplate(home / "vms" / WARM / "launched.json", keep)
        remove_vm(WARM)

        for i in range(args.runs):
            name = f"bench-deb-{i}"
            ready, returned, finished = vmkit_boot(args.image, name, pub, key)
            remove_vm(name)
            ssh_vm.append(ready)
            done_vm.append(returned)
            fin_vm.append(finished)
            ready, finished = raw.boot(key)
            ssh_raw.append(ready)
            fin_raw.append(finished)
            print(f"  run {i + 1}: vmkit ssh {ssh_vm[-1]:.1f} s, cloud-init done "
                  f"{done_vm[-1]:.1f} s (boot-finished {fin_vm[-1]:.1f} s)   raw QEMU ssh "
                  f"{ssh_raw[-1]:.1f} s, boot-finished {fin_raw[-1]:.1f} s", flush=True)
        accel = client.info()["accel"]
    finally:
        for name in names:
            remove_vm(name)
        shutil.rmtree(keep, ignore_errors=True)
        if started_daemon:  # it made the home, or found no daemon in it
            stop_daemon(home, client)

    if build is not None:
        print("\nimage build: vmkit image build debian --force --name bench-debian")
        if build[0] is not None:
            print(row("build, first (cache as it was found)", [build[0]]))
        print(row("build, packages cached", [build[1]]))
    image = args.image
    print(f"\nboot of the {image} image, {CPUS} vCPUs, {MEMORY[:-1]} GiB, accel={accel}, "
          f"network restricted")
    print(f"host: {os.cpu_count()} CPUs, load {load[0]:.2f} at the start"
          + (f", {others} other QEMU processes running" if others else ""))
    if others or load[0] > 1.0:
        print("warning: the host was busy; under contention vmkit's QEMU (in a cgroup of its "
              "own) and raw QEMU (in the caller's) do not get the same share of the CPUs")
    print("ssh ready: first `ssh ... true` that succeeds, polled every 0.5 s, both columns")
    print(row("vmkit run -d: ssh ready", ssh_vm))
    print(row("raw QEMU, same argv: ssh ready", ssh_raw))
    print(ratio("ratio vmkit / raw QEMU (median)", ssh_vm, ssh_raw))
    print("cloud-init done: vmkit = `vmkit run -d` returns (vmkitd runs `cloud-init status "
          "--wait`\n  through the guest agent); raw QEMU = boot-finished seen over ssh")
    print(row("vmkit run -d returns", done_vm))
    print(row("raw QEMU: boot-finished over ssh", fin_raw))
    print(ratio("ratio vmkit / raw QEMU (median)", done_vm, fin_raw))
    print("the same, vmkit also measured by boot-finished over ssh (method for method)")
    print(row("vmkit run -d: boot-finished over ssh", fin_vm))
    print(row("raw QEMU: boot-finished over ssh", fin_raw))
    print(ratio("ratio vmkit / raw QEMU (median)", fin_vm, fin_raw))
    print(f"{'vmkit: return after boot-finished (median)':42s} "
          f"{statistics.median(d - f for d, f in zip(done_vm, fin_vm)):.2f} s")


if __name__ == "__main__":
    main()

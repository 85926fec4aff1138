"""What every benchmark here shares: a vmkit home with the tiny image, timing, and the way
results are printed (min and median of n, side by side with the baseline)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import vmkit

# The installed console script itself, not a shim in front of it (pyenv's adds ~100 ms).
VMKIT = str(Path(sys.executable).with_name("vmkit"))


def vmkit_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([VMKIT, *args], capture_output=True, check=True)


def timed(fn: Callable[..., Any], *args: Any, **kw: Any) -> float:
    start = time.monotonic()
    fn(*args, **kw)
    return time.monotonic() - start


def row(label: str, samples: list[float], unit: float = 1.0, fmt: str = "{:.2f} s") -> str:
    lo, med = min(samples) * unit, statistics.median(samples) * unit
    return (f"{label:42s} min {fmt.format(lo):>10s}   median {fmt.format(med):>10s}   "
            f"(n={len(samples)})")


def ratio(label: str, ours: list[float], base: list[float], goal: str = "") -> str:
    r = statistics.median(ours) / statistics.median(base)
    return f"{label:42s} {r:.2f}x" + (f"   ({goal})" if goal else "")


def open_home(home: Path | None) -> tuple[Path, vmkit.Client]:
    """A VMKIT_HOME (a new one unless given) with its daemon running and the tiny image built.

    vmkit is byte-compiled first, as `pip install` of a wheel does; an editable install under
    PYTHONDONTWRITEBYTECODE (as on the CI machine) would otherwise recompile it every run."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(vmkit.__file__).parent)],
                   check=True, capture_output=True)
    home = home or Path(tempfile.mkdtemp(prefix="vmkit-bench-", dir="/tmp"))
    os.environ["VMKIT_HOME"] = str(home)
    client = vmkit.Client(autostart=True)
    if not any(i["name"] == "tiny" for i in client.list_images()):
        print("building the tiny image ...", flush=True)
        client.wait_operation(client.build_image("tiny")["id"])
    return home, client


def stop_daemon(home: Path, client: vmkit.Client) -> None:
    client.close()
    os.kill(int((home / "run" / "vmkitd.pid").read_text().strip()), 15)


def qemu_pss_mib(pid: int) -> float:
    """Proportional set size of one process: shared pages count divided among their users."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no Pss for pid {pid}")


def clone_home(src: Path, dst: Path) -> None:
    """A second VMKIT_HOME with ``src``'s images (shared) and nothing else."""
    import sqlite3

    dst.mkdir(mode=0o700)
    (dst / "images").symlink_to(src / "images")
    with sqlite3.connect(src / "state.db") as a, sqlite3.connect(dst / "state.db") as b:
        a.backup(b)
        for table in ("vms", "operations", "snapshots", "templates"):
            b.execute(f"DELETE FROM {table}")


def start_daemon(home: Path, *args: str) -> vmkit.Client:
    """Start vmkitd for ``home`` with ``args`` (e.g. --listen) and wait until it answers."""
    env = dict(os.environ, VMKIT_HOME=str(home))
    with open(home / "bench-vmkitd.log", "ab") as log:
        subprocess.Popen([sys.executable, "-m", "vmkit.daemon", *args], env=env,
                         stdout=log, stderr=log, start_new_session=True)
    client = vmkit.Client(home=home)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.info()
            return client
        except vmkit.DaemonError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

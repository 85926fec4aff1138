"""Cold boot to agent-ready: `vmkit run -d` against plain QEMU, in the same run.

    python bench/boot.py [--runs 5]

vmkit: wall time of `vmkit run -d` (the CLI returns when the guest agent answers).
raw QEMU: the same QEMU command line vmkit launched (kernel, initrd, disk overlay, devices),
spawned directly and timed to the agent's first answer. Runs alternate so that drift in the
machine's load hits both. Also times `vmkit ls` against the Python interpreter's bare start.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import open_home, row, stop_daemon, timed, vmkit_cli
from rawboot import raw_boot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--home", type=Path, default=None, help="VMKIT_HOME (default: a new one)")
    args = parser.parse_args()
    home, client = open_home(args.home)

    # Warm-up, not timed: the accelerator probe and the image check happen once per daemon.
    vmkit_cli("run", "-d", "--network", "restricted", "--name", "bench-warm")
    launched = home / "vms" / "bench-warm" / "launched.json"
    raw_boot(launched)

    vm_times, raw_times = [], []
    for i in range(args.runs):
        name = f"bench-{i}"
        vm_times.append(timed(vmkit_cli, "run", "-d", "--network", "restricted", "--name", name))
        vmkit_cli("rm", "-f", name)
        raw_times.append(raw_boot(launched))
        print(f"  run {i + 1}: vmkit {vm_times[-1]:.2f} s   raw QEMU {raw_times[-1]:.2f} s", flush=True)

    ls_times = [timed(vmkit_cli, "ls") for _ in range(20)]
    py_times = [timed(subprocess.run, [sys.executable, "-c", "pass"]) for _ in range(20)]
    vmkit_cli("rm", "-f", "bench-warm")

    accel = client.info()["accel"]
    ratio = statistics.median(vm_times) / statistics.median(raw_times)
    print(f"\ncold boot to guest agent ready, tiny image, 256 MiB, 1 vCPU, accel={accel}")
    print(row("vmkit run -d", vm_times))
    print(row("raw QEMU, same argv", raw_times))
    print(f"{'ratio vmkit / raw QEMU (median)':34s} {ratio:.2f}x   (goal <= 1.2x, and < 2.0 s)")
    print("\nvmkit ls (1 VM)")
    print(row("vmkit ls", ls_times, 1000, "{:.0f} ms"))
    print(row("python -c pass (interpreter floor)", py_times, 1000, "{:.0f} ms"))
    print(f"{'ratio vmkit ls / python floor':34s} "
          f"{statistics.median(ls_times) / statistics.median(py_times):.2f}x   (goal: ls < 150 ms)")
    if args.home is None:
        stop_daemon(home, client)


if __name__ == "__main__":
    main()

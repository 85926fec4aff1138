"""Live migration of a running guest between two vmkit hosts on loopback, against plain QEMU.

    python bench/migrate.py [--runs 3]

For 256 MiB and 1 GiB guests, idle and while the guest rewrites 64 MiB of its memory in a
loop, in one run:
vmkit      Client.migrate between two vmkitd on 127.0.0.1, back and forth: wall time from the
           call until the VM answers at the destination, QEMU's downtime, and the disk mirror's
           part (vmkit always copies the disk: the image and the VM's layers, ~45 MiB here)
raw QEMU   the same guest between two plain QEMUs that share its disk file, moving no disk
           (bench/rawmigrate.py): QEMU's own total time and downtime
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import clone_home, open_home, ratio, row, start_daemon, stop_daemon
from rawmigrate import RawPair

import vmkit

DIRTY = ("setsid sh -c 'while :; do dd if=/dev/zero of=/tmp/dirty bs=1M count=64 "
         "conv=notrunc 2>/dev/null; done' >/dev/null 2>&1 &")
VM = "bench-mig"


def vmkit_runs(hosts, memory: str, dirty: bool, runs: int) -> tuple[dict[str, list[float]], str]:
    (a, url_a, tok_a), (b, url_b, tok_b) = hosts
    a.create_vm(VM, memory=memory, network="none")
    launched = a.paths.vm(VM).launched.read_text()  # for the raw baseline: the same argv
    if dirty:
        a.exec(VM, ["sh", "-c", DIRTY])
    time.sleep(2)
    out: dict[str, list[float]] = {"wall": [], "memory": [], "downtime": [], "disk": [],
                                   "failed": []}
    here, there = (a, url_a, tok_a), (b, url_b, tok_b)
    for _ in range(runs):
        src, dst = here[0], there
        start = time.monotonic()
        try:
            done = src.wait_operation(src.migrate(VM, dst[1], dst[2])["id"], interval=0.02)
        except vmkit.VmkitError as e:  # the VM runs on at the source: count it, go on
            print(f"    move failed: {e.message}", flush=True)
            out["failed"].append(1.0)
            continue
        out["wall"].append(time.monotonic() - start)
        out["downtime"].append(int(re.search(r"downtime (\d+) ms", done["message"])[1]) / 1000)
        out["disk"].append(float(re.search(r"disk ([\d.]+) s", done["message"])[1]))
        out["memory"].append(float(re.search(r"memory ([\d.]+) s", done["message"])[1]))
        here, there = there, here
    here[0].remove_vm(VM, force=True)
    return out, launched


async def raw_runs(launched: str, dirty: bool, runs: int) -> dict[str, list[float]]:
    argv = json.loads(launched)["argv"]
    vm_dir = Path(argv[argv.index("-pidfile") + 1]).parent
    image = Path(argv[argv.index("-kernel") + 1]).parent / "rootfs.raw"
    with tempfile.TemporaryDirectory(prefix="rawmig-", dir="/tmp") as tmp:
        # RawGuest reads the argv from a launched.json in the VM's directory, which the move
        # removed: put a copy where it expects one.
        copy = Path(tmp) / vm_dir.name / "launched.json"
        copy.parent.mkdir()
        copy.write_text(launched.replace(str(vm_dir), str(copy.parent)))
        pair = RawPair(copy, str(image))
        out: dict[str, list[float]] = {"wall": [], "total": [], "downtime": []}
        try:
            await pair.boot()
            if dirty:
                await pair.run(DIRTY)
            await asyncio.sleep(2)
            for _ in range(runs):
                try:
                    wall, total, downtime = await pair.move()
                except TimeoutError:  # the guest died at the destination; it is gone
                    print("    raw move failed: the guest never answered there", flush=True)
                    out["failed"] = [1.0]
                    break
                out["wall"].append(wall)
                out["total"].append(total)
                out["downtime"].append(downtime)
        finally:
            await pair.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from vmkit.migration import free_port

    home_a, client = open_home(None)
    stop_daemon(home_a, client)
    home_b = home_a.with_name(home_a.name + "-b")
    clone_home(home_a, home_b)
    hosts = []
    for home in (home_a, home_b):
        time.sleep(0.5)
        port = free_port("127.0.0.1")
        c = start_daemon(home, "--listen", f"127.0.0.1:{port}")
        hosts.append((c, f"http://127.0.0.1:{port}", (home / "run/token").read_text().strip()))

    results = []
    for memory in ("256M", "1G"):
        for dirty in (False, True):
            label = f"{memory}, {'dirtying 64 MiB' if dirty else 'idle'}"
            print(f"  {label} ...", flush=True)
            ours, launched = vmkit_runs(hosts, memory, dirty, args.runs)
            raw = asyncio.run(raw_runs(launched, dirty, args.runs))
            results.append((label, ours, raw))

    for home, (c, _, _) in zip((home_a, home_b), hosts, strict=True):
        stop_daemon(home, c)
    print(f"\nlive migration on loopback, tiny image, 1 vCPU, accel=tcg, {args.runs} moves each")
    for label, ours, raw in results:
        print(f"\n{label}")
        if not ours["wall"] or not raw["wall"]:
            print(f"  no complete runs to compare (vmkit {len(ours['wall'])}, raw "
                  f"{len(raw['wall'])}); failed moves: vmkit {len(ours['failed'])}, raw "
                  f"{len(raw.get('failed', []))}")
            continue
        print(f"  failed moves: vmkit {len(ours['failed'])} of {len(ours['failed']) + len(ours['wall'])}"
              f", raw QEMU {'1 (then stopped)' if raw.get('failed') else 0}")
        print(row("vmkit: call to agent answer there", ours["wall"]))
        print(row("  disk mirror", ours["disk"]))
        print(row("  memory (QEMU total-time)", ours["memory"]))
        print(row("raw QEMU: start to agent answer there", raw["wall"]))
        print(row("  memory (QEMU total-time)", raw["total"]))
        print(row("vmkit downtime (QEMU's)", ours["downtime"], 1000, "{:.0f} ms"))
        print(row("raw QEMU downtime", raw["downtime"], 1000, "{:.0f} ms"))
        no_disk = [w - d for w, d in zip(ours["wall"], ours["disk"], strict=True)]
        print(ratio("ratio vmkit / raw, to agent answer", ours["wall"], raw["wall"],
                    "goal <= 1.2x"))
        print(ratio("  the same without vmkit's disk copy", no_disk, raw["wall"]))
        print(ratio("ratio memory phase vmkit / raw", ours["memory"], raw["total"]))


if __name__ == "__main__":
    main()

"""Live migration of a running guest between two vmkit hosts on loopback, against plain QEMU.

    python bench/migrate.py [--runs 3]
    python bench/migrate.py --busy 10 [--qemu PATH ...]

--busy N: a busy guest (2 vCPUs; memory, processes and page cache churning) moved N times back
and forth on each QEMU (the system's, and each --qemu), by vmkit (memory check where the QEMU
is not trusted, 5 s watch) and by plain QEMU (the same argv, each arrival watched 5 s for a
kernel failure): moves completed, rolled back and lost, per QEMU version.

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
import os
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
    (a, url_a, tok_a, _), (b, url_b, tok_b, _) = hosts
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


BUSY = ("setsid sh -c 'while :; do dd if=/dev/zero of=/tmp/dirty bs=1M count=48 "
        "conv=notrunc 2>/dev/null; done' >/dev/null 2>&1 & "
        "setsid sh -c 'while :; do ls -R /usr >/dev/null 2>&1; echo x | cat >/dev/null; "
        "done' >/dev/null 2>&1 &")


def two_hosts(qemu: str | None) -> list[tuple[vmkit.Client, str, str, Path]]:
    """Two vmkitd on loopback running ``qemu`` (None: the system's)."""
    from vmkit.networks.ports import free_port

    if qemu:
        os.environ["VMKIT_QEMU"] = qemu
    else:
        os.environ.pop("VMKIT_QEMU", None)
    home_a, client = open_home(None)
    stop_daemon(home_a, client)
    home_b = home_a.with_name(home_a.name + "-b")
    clone_home(home_a, home_b)
    hosts = []
    for home in (home_a, home_b):
        time.sleep(0.5)
        port = free_port("127.0.0.1")
        c = start_daemon(home, "--listen", f"127.0.0.1:{port}")
        hosts.append((c, f"http://127.0.0.1:{port}", (home / "run/token").read_text().strip(),
                      home))
    return hosts


def busy_vmkit(hosts: list[tuple[vmkit.Client, str, str, Path]], moves: int
               ) -> tuple[dict[str, int], str]:
    from vmkit.machine.kernel_log import failure

    a = hosts[0][0]
    a.create_vm(VM, cpus=2, memory="256M", network="none")
    launched = a.paths.vm(VM).launched.read_text()
    a.exec(VM, ["sh", "-c", BUSY])
    time.sleep(2)
    tally = {"completed": 0, "rolled back": 0, "lost": 0}
    here = 0
    for i in range(moves):
        src, dst = hosts[here][0], hosts[1 - here]
        try:
            src.wait_operation(src.migrate(VM, dst[1], dst[2], watch=5)["id"], interval=0.05)
            tally["completed"] += 1
            here = 1 - here
        except vmkit.VmkitError as e:
            tally["rolled back"] += 1
            print(f"    move {i + 1} rolled back: {e.message[:160]}", flush=True)
        holders = [c for c, *_ in hosts if VM in {v["name"] for v in c.list_vms()}]
        dmesg = holders[0].exec(VM, ["dmesg"]).stdout.decode(errors="replace") \
            if len(holders) == 1 else ""
        if len(holders) != 1 or failure(dmesg):
            tally["lost"] += 1
            print(f"    move {i + 1}: the guest is lost ({failure(dmesg)})", flush=True)
            break
    hosts[here][0].remove_vm(VM, force=True)
    return tally, launched


async def busy_raw(launched: str, moves: int) -> dict[str, int]:
    from migrate_watch import watch

    argv = json.loads(launched)["argv"]
    vm_dir = Path(argv[argv.index("-pidfile") + 1]).parent
    image = Path(argv[argv.index("-kernel") + 1]).parent / "rootfs.raw"
    tally = {"completed": 0, "rolled back": 0, "lost": 0}
    with tempfile.TemporaryDirectory(prefix="rawbusy-", dir="/tmp") as tmp:
        copy = Path(tmp) / vm_dir.name / "launched.json"
        copy.parent.mkdir()
        copy.write_text(launched.replace(str(vm_dir), str(copy.parent)))
        pair = RawPair(copy, str(image))
        try:
            await pair.boot()
            await pair.run(BUSY)
            await asyncio.sleep(2)
            for _ in range(moves):
                try:
                    await pair.move()
                    failed = await watch(pair, 5.0)
                except (TimeoutError, RuntimeError) as e:
                    failed = (0.0, str(e))
                if failed:  # plain QEMU has no copy to go back to
                    tally["lost"] += 1
                    print(f"    plain QEMU lost the guest: {failed[1][:160]}", flush=True)
                    break
                tally["completed"] += 1
        finally:
            await pair.close()
    return tally


def busy_main(moves: int, qemus: list[str | None]) -> None:
    from vmkit.machine import qemu as probe

    rows = []
    for q in qemus:
        hosts = two_hosts(q)
        version = probe.current().version
        print(f"  QEMU {version}: {moves} moves of a busy guest ...", flush=True)
        ours, launched = busy_vmkit(hosts, moves)
        for c, _, _, home in hosts:
            stop_daemon(home, c)
        raw = asyncio.run(busy_raw(launched, moves))
        rows.append((version, ours, raw))
    print(f"\nbusy guest (tiny, 2 vCPUs, 256 MiB, churning), {moves} moves each, accel=tcg")
    print(f"{'QEMU':<8} {'who':<11} {'completed':>9} {'rolled back':>11} {'lost':>5}")
    for version, ours, raw in rows:
        for who, t in (("vmkit", ours), ("plain QEMU", raw)):
            print(f"{version:<8} {who:<11} {t['completed']:>9} {t['rolled back']:>11} "
                  f"{t['lost']:>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, metavar="MOVES")
    parser.add_argument("--qemu", action="append", default=[],
                        help="another QEMU to run --busy on (e.g. QEMU 10, tools/get-qemu10)")
    args = parser.parse_args()
    if args.busy:
        busy_main(args.busy, [None, *args.qemu])
        return
    hosts = two_hosts(os.environ.get("VMKIT_QEMU"))

    results = []
    for memory in ("256M", "1G"):
        for dirty in (False, True):
            label = f"{memory}, {'dirtying 64 MiB' if dirty else 'idle'}"
            print(f"  {label} ...", flush=True)
            ours, launched = vmkit_runs(hosts, memory, dirty, args.runs)
            raw = asyncio.run(raw_runs(launched, dirty, args.runs))
            results.append((label, ours, raw))

    for c, _, _, home in hosts:
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

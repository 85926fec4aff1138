"""How long after a live migration does a guest that QEMU corrupted show it? The measurement
behind vmkit's watch window (VMKIT_MIGRATION_WATCH, migration.py).

    python bench/migrate_watch.py [--moves 10] [--watch 60] [--qemu PATH]

A tiny guest (2 vCPUs, 256 MiB) runs a churning workload (memory rewritten with dd, processes
created in a loop, page cache) and is moved back and forth between two plain QEMUs on this host
(bench/rawmigrate.py). After each move the destination is watched for --watch seconds: its
console for kernel panics and oopses, its agent for answers. Prints, per move, whether and
when (seconds after the switch) the guest failed, and the failure's first console line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import open_home
from rawboot import agent_ready
from rawmigrate import RawPair

WORKLOAD = ("setsid sh -c 'while :; do dd if=/dev/zero of=/tmp/dirty bs=1M count=64 "
            "conv=notrunc 2>/dev/null; done' >/dev/null 2>&1 & "
            "setsid sh -c 'while :; do ls -R /usr >/dev/null 2>&1; echo x | cat >/dev/null; "
            "done' >/dev/null 2>&1 &")
VM = "bench-watch"


async def watch(pair: RawPair, seconds: float) -> tuple[float, str] | None:
    """Seconds after the switch at which the guest failed, and why; None if it stayed well."""
    from vmkit.machine.kernel_log import failure as panic_text

    side = pair.guest.tmp / f"side{pair.side}"
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        log = (side / "serial.log").read_text(errors="replace") if (
            side / "serial.log").exists() else ""
        if why := panic_text(log):
            return elapsed, why
        if pair.proc is not None and pair.proc.returncode is not None:
            return elapsed, f"QEMU exited ({pair.proc.returncode})"
        try:
            await asyncio.to_thread(agent_ready, str(side / "agent.sock"), time.monotonic() + 5)
        except TimeoutError:
            return time.monotonic() - start, "the agent stopped answering"
        await asyncio.sleep(0.5)
    return None


async def run(launched: Path, image: str, moves: int, seconds: float) -> None:
    pair = RawPair(launched, image)
    failures = []
    try:
        await pair.boot()
        await pair.run(WORKLOAD)
        await asyncio.sleep(3)
        for i in range(moves):
            try:
                wall, _, downtime = await pair.move()
            except (TimeoutError, RuntimeError) as e:
                failures.append((i, 0.0, f"the move itself failed: {e}"))
                print(f"move {i + 1}: failed at once ({e})", flush=True)
                break
            failed = await watch(pair, seconds)
            print(f"move {i + 1}: downtime {downtime * 1000:.0f} ms, "
                  + (f"FAILED {failed[0]:.1f} s after the switch: {failed[1]}" if failed
                     else f"healthy for {seconds:.0f} s"), flush=True)
            if failed:
                failures.append((i, *failed))
                break  # the guest is lost: plain QEMU has no copy to go back to
    finally:
        await pair.close()
    print(f"\n{len(failures)} failure(s); seconds after the switch: "
          f"{[round(t, 1) for _, t, _ in failures]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--watch", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1, help="fresh guests, one after another")
    args = parser.parse_args()
    home, client = open_home(None)
    client.create_vm(VM, cpus=2, memory="256M", network="none")
    launched_text = client.paths.vm(VM).launched.read_text()
    client.remove_vm(VM, force=True)
    argv = json.loads(launched_text)["argv"]
    print(f"QEMU {argv[0]}, tiny guest, 2 vCPUs, 256 MiB, churning workload", flush=True)
    vm_dir = Path(argv[argv.index("-pidfile") + 1]).parent
    image = Path(argv[argv.index("-kernel") + 1]).parent / "rootfs.raw"
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="watch-", dir="/tmp") as tmp:
            copy = Path(tmp) / vm_dir.name / "launched.json"
            copy.parent.mkdir()
            copy.write_text(launched_text.replace(str(vm_dir), str(copy.parent)))
            print(f"round {r + 1}", flush=True)
            asyncio.run(run(copy, str(image), args.moves, args.watch))


if __name__ == "__main__":
    main()

"""Forks of a running 256 MiB template: time to ready, and the memory of many forks against
as many cold-booted VMs, in one run.

    python bench/fork.py [--forks 20] [--runs 5]

fork ready     Client.fork (SDK) from a template until it returns: QEMU started on the template's
               RAM file (mapped copy-on-write), device state loaded, guest running, agent
               answering, and the fork's own hostname, MAC, machine-id, entropy and clock set
vmkit fork     the same through the CLI, with its own start
raw restore    plain QEMU restoring the same guest from a migration file to the agent's first
               answer (bench/rawsnap.py): the classic way to "clone" a saved VM
cold boot      vmkit run of the same image, to the agent's answer
memory         total PSS of the QEMU processes of N running forks, then of N cold-booted VMs
               (shared pages count once, split among their users), each measured 5 s after the
               last one became ready
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import open_home, qemu_pss_mib, ratio, row, stop_daemon, timed, vmkit_cli
from rawsnap import RawGuest

TEMPLATE_VM, TEMPLATE = "bench-tpl-src", "bench-tpl"


def total_pss(client, names: list[str]) -> float:
    time.sleep(5)
    return sum(qemu_pss_mib(client.get_vm(n)["pid"]) for n in names)


async def raw_restores(launched: Path, runs: int) -> list[float]:
    raw = RawGuest(launched)
    try:
        await raw.boot()
        await asyncio.sleep(3)
        state = raw.tmp / "state"
        await raw.save(state)
        return [await raw.restore(state) for _ in range(runs)]
    finally:
        await raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5, help="for the CLI and the baselines")
    parser.add_argument("--home", type=Path, default=None, help="VMKIT_HOME (default: a new one)")
    args = parser.parse_args()
    home, client = open_home(args.home)
    boot = [timed(client.create_vm, TEMPLATE_VM, memory="256M", network="restricted")]
    time.sleep(3)
    client.create_template(TEMPLATE, TEMPLATE_VM)  # snapshots it and prepares the RAM file
    raw = asyncio.run(raw_restores(home / "vms" / TEMPLATE_VM / "launched.json", args.runs))

    forks = [f"bench-fork-{i}" for i in range(args.forks)]
    ready = []
    for name in forks:
        ready.append(timed(client.fork, TEMPLATE, name))
        print(f"  {name}: ready in {ready[-1]:.3f} s", flush=True)
    fork_pss = total_pss(client, forks)
    for name in forks:
        client.remove_vm(name, force=True)
    cli = []
    for i in range(args.runs):
        cli.append(timed(vmkit_cli, "fork", TEMPLATE, f"bench-cli-{i}"))
        vmkit_cli("rm", "-f", f"bench-cli-{i}")

    cold = [f"bench-cold-{i}" for i in range(args.forks)]
    for name in cold:
        boot.append(timed(client.create_vm, name, memory="256M", network="restricted"))
        print(f"  {name}: booted in {boot[-1]:.2f} s", flush=True)
    cold_pss = total_pss(client, cold)
    for name in cold:
        client.remove_vm(name, force=True)
    client.remove_template(TEMPLATE)
    client.remove_vm(TEMPLATE_VM, force=True)

    accel = client.info()["accel"]
    print(f"\nforks of a running template, tiny image, 256 MiB, 1 vCPU, accel={accel}")
    print(row("fork ready, own identity (SDK)", ready, 1000, "{:.0f} ms"))
    print(row("vmkit fork (CLI)", cli, 1000, "{:.0f} ms"))
    print(row("raw QEMU restore from file to agent", raw, 1000, "{:.0f} ms"))
    print(row("cold boot to agent (vmkit)", boot, 1000, "{:.0f} ms"))
    print(ratio("ratio fork / raw QEMU restore", ready, raw, "goal: fork <= 100 ms"))
    print(ratio("ratio fork / cold boot", ready, boot))
    print(f"{f'memory of {args.forks} forks (total PSS)':42s} {fork_pss:.0f} MiB")
    print(f"{f'memory of {args.forks} cold VMs (total PSS)':42s} {cold_pss:.0f} MiB")
    print(f"{'ratio forks / cold VMs':42s} {fork_pss / cold_pss:.2f}x   (goal < 0.40x)")
    if args.home is None:
        stop_daemon(home, client)


if __name__ == "__main__":
    main()

"""Snapshot save and restore of a running 256 MiB guest: vmkit, raw QEMU and virsh, one run.

    python bench/snapshot.py [--runs 5] [--no-virsh]

vmkit save     Client.create_snapshot: pause, freeze the disk layer, state to a file, resume
vmkit restore  Client.restore_snapshot until it returns: a new QEMU on a new disk layer, the
               state loaded, the guest running and its agent answering, clock and entropy
               refreshed through it
raw QEMU       a copy of the same guest (same QEMU command line), the same QMP steps by hand:
               bench/rawsnap.py; restore is timed to the agent's first answer
virsh          libvirt's `virsh save` / `virsh restore` of the same kernel, initrd and disk
               (bench/virsh_baseline.py), where libvirtd can run
vmkit CLI      `vmkit snapshot create` / `vmkit snapshot restore`, with the CLI's own start
Runs alternate between vmkit and raw QEMU, so that drift in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import open_home, ratio, row, stop_daemon, timed, vmkit_cli
from rawsnap import RawGuest
from virsh_baseline import stop_libvirtd, virsh_save_restore

VM = "bench-snap"


def boot_files(launched: Path) -> tuple[Path, Path, Path]:
    argv = json.loads(launched.read_text())["argv"]
    disk = next(a.split("file=")[1].split(",")[0] for a in argv if "file=" in a)
    chain = json.loads(subprocess.check_output(
        ["qemu-img", "info", "-U", "--backing-chain", "--output=json", disk]))
    return (Path(argv[argv.index("-kernel") + 1]), Path(argv[argv.index("-initrd") + 1]),
            Path(chain[-1]["filename"]))


async def raw_runs(launched: Path, runs: int, vmkit_turn) -> dict[str, list[float]]:
    raw = RawGuest(launched)
    out: dict[str, list[float]] = {"save": [], "restore": [], "size": []}
    try:
        await raw.boot()
        await asyncio.sleep(3)
        for i in range(runs):
            await asyncio.to_thread(vmkit_turn, i)
            state = raw.tmp / f"state-{i}"
            out["save"].append(await raw.save(state))
            out["restore"].append(await raw.restore(state))
            out["size"].append(state.stat().st_size)
            state.unlink()
            print(f"  run {i + 1}: raw QEMU save {out['save'][-1]:.3f} s, "
                  f"restore {out['restore'][-1]:.3f} s", flush=True)
    finally:
        await raw.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-virsh", action="store_true", help="skip the libvirt baseline")
    parser.add_argument("--home", type=Path, default=None, help="VMKIT_HOME (default: a new one)")
    args = parser.parse_args()
    home, client = open_home(args.home)
    client.create_vm(VM, memory="256M", network="restricted")
    time.sleep(3)  # let the guest settle after boot, as the raw copy does
    vm: dict[str, list[float]] = {"save": [], "restore": [], "size": []}

    def vmkit_turn(i: int) -> None:
        vm["save"].append(timed(client.create_snapshot, VM, f"s{i}"))
        vm["size"].append(client.get_snapshot(VM, f"s{i}")["size"])
        vm["restore"].append(timed(client.restore_snapshot, VM, f"s{i}"))
        print(f"  run {i + 1}: vmkit save {vm['save'][-1]:.3f} s, "
              f"restore {vm['restore'][-1]:.3f} s", flush=True)

    launched = home / "vms" / VM / "launched.json"
    raw = asyncio.run(raw_runs(launched, args.runs, vmkit_turn))
    cli_save = [timed(vmkit_cli, "snapshot", "create", VM, f"c{i}") for i in range(args.runs)]
    cli_restore = [timed(vmkit_cli, "snapshot", "restore", VM, f"c{i}") for i in range(args.runs)]
    virsh: dict[str, list[float]] | str = "skipped (--no-virsh)"
    if not args.no_virsh:
        print("  virsh (each run boots a guest first) ...", flush=True)
        try:
            virsh = virsh_save_restore(*boot_files(launched), 256, args.runs)
        finally:
            stop_libvirtd()
    client.remove_vm(VM, force=True)

    accel = client.info()["accel"]
    mib = 1 / (1 << 20)
    print(f"\nsnapshot of a running guest, tiny image, 256 MiB, 1 vCPU, accel={accel}")
    print(row("vmkit save (SDK)", vm["save"]))
    print(row("raw QEMU save", raw["save"]))
    if isinstance(virsh, dict):
        print(row("virsh save", virsh["save"]))
    print(row("vmkit snapshot create (CLI)", cli_save))
    print(row("vmkit restore to agent + identity (SDK)", vm["restore"]))
    print(row("raw QEMU restore to agent", raw["restore"]))
    if isinstance(virsh, dict):
        print(row("virsh restore to agent", virsh["restore"]))
    print(row("vmkit snapshot restore (CLI)", cli_restore))
    print(row("vmkit snapshot size (state + disk layer)", vm["size"], mib, "{:.0f} MiB"))
    print(row("raw QEMU state file", raw["size"], mib, "{:.0f} MiB"))
    print(ratio("ratio save vmkit / raw QEMU", vm["save"], raw["save"]))
    print(ratio("ratio restore vmkit / raw QEMU", vm["restore"], raw["restore"]))
    if isinstance(virsh, dict):
        print(ratio("ratio save vmkit / virsh", vm["save"], virsh["save"]))
        print(ratio("ratio restore vmkit / virsh", vm["restore"], virsh["restore"]))
    else:
        print(f"{'virsh':38s} {virsh}")
    if args.home is None:
        stop_daemon(home, client)


if __name__ == "__main__":
    main()

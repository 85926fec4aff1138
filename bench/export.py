"""Export with memory and import of a running 256 MiB guest: vmkit and raw QEMU, one run.

    python bench/export.py [--runs 5]

vmkit export   Client.export_vm(memory=True) to a file: freeze the disk layer and save the
               state (the guest pauses for the save only), flatten the disk chain into one
               qcow2, SHA-256 of each member, stream the tar archive to the client's file
vmkit import   Client.import_vm into a second vmkit home: upload, unpack with the checksums
               checked, a new QEMU loading the state, until the guest agent answers
raw QEMU       a copy of the same guest (bench/rawsnap.py) and the same work by hand, without
               checksums or an API: save the state to a file, `qemu-img convert` the disk
               chain, tar both; then untar and restore the state, until the agent answers
Runs alternate between vmkit and raw QEMU.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import clone_home, open_home, ratio, row, start_daemon, stop_daemon, timed
from rawsnap import RawGuest

VM = "bench-export"


async def raw_export(raw: RawGuest, archive: Path) -> float:
    start = time.monotonic()
    state = raw.tmp / "state"
    await raw.save(state)
    disk = raw.tmp / "flat.qcow2"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "qcow2", str(raw.tmp / "disk.qcow2"),
                    str(disk)], check=True)
    with tarfile.open(archive, "w") as tar:
        tar.add(disk, "disk.qcow2")
        tar.add(state, "state")
    disk.unlink()
    state.unlink()
    return time.monotonic() - start


async def raw_import(raw: RawGuest, archive: Path) -> float:
    await raw.kill()
    start = time.monotonic()
    with tarfile.open(archive) as tar:
        tar.extractall(raw.tmp / "in", filter="data")
    await raw.restore(raw.tmp / "in" / "state")  # to the agent's answer
    took = time.monotonic() - start
    shutil.rmtree(raw.tmp / "in")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    home, client = open_home(None)
    other_home = Path(tempfile.mkdtemp(prefix="vmkit-bench-import-", dir="/tmp"))
    other_home.rmdir()
    clone_home(home, other_home)
    other = start_daemon(other_home)
    work = Path(tempfile.mkdtemp(prefix="bench-export-", dir="/tmp"))
    client.create_vm(VM, memory="256M", network="restricted")
    time.sleep(3)
    vm: dict[str, list[float]] = {"export": [], "import": [], "size": []}
    raw_out: dict[str, list[float]] = {"export": [], "import": [], "size": []}

    async def runs() -> None:
        raw = RawGuest(home / "vms" / VM / "launched.json")
        try:
            await raw.boot()
            await asyncio.sleep(3)
            for i in range(args.runs):
                path = work / f"vm-{i}.vmkit"
                vm["export"].append(await asyncio.to_thread(
                    timed, client.export_vm, VM, path, memory=True))
                vm["size"].append(path.stat().st_size)
                vm["import"].append(await asyncio.to_thread(
                    timed, other.import_vm, path, f"imported-{i}"))
                await asyncio.to_thread(other.remove_vm, f"imported-{i}", True)
                path.unlink()
                archive = work / f"raw-{i}.tar"
                raw_out["export"].append(await raw_export(raw, archive))
                raw_out["size"].append(archive.stat().st_size)
                raw_out["import"].append(await raw_import(raw, archive))
                archive.unlink()
                print(f"  run {i + 1}: vmkit export {vm['export'][-1]:.2f} s, import "
                      f"{vm['import'][-1]:.2f} s; raw QEMU {raw_out['export'][-1]:.2f} s, "
                      f"{raw_out['import'][-1]:.2f} s", flush=True)
        finally:
            await raw.close()

    try:
        asyncio.run(runs())
    finally:
        client.remove_vm(VM, force=True)
        stop_daemon(other_home, other)
        shutil.rmtree(work, ignore_errors=True)
    mib = 1 / (1 << 20)
    print(f"\nexport with memory and import, tiny image, 256 MiB, 1 vCPU, "
          f"accel={client.info()['accel']}")
    print(row("vmkit export --memory (SDK)", vm["export"]))
    print(row("raw QEMU save + convert + tar", raw_out["export"]))
    print(row("vmkit import to agent (SDK)", vm["import"]))
    print(row("raw QEMU untar + restore to agent", raw_out["import"]))
    print(row("vmkit export file", vm["size"], mib, "{:.0f} MiB"))
    print(row("raw QEMU archive", raw_out["size"], mib, "{:.0f} MiB"))
    print(ratio("ratio export vmkit / raw QEMU", vm["export"], raw_out["export"]))
    print(ratio("ratio import vmkit / raw QEMU", vm["import"], raw_out["import"]))
    stop_daemon(home, client)


if __name__ == "__main__":
    main()

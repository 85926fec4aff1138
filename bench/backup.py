"""Backups of a running guest with a 1 GiB disk into borg: vmkit, the floor by hand, virsh.

    python bench/backup.py [--runs 1] [--no-virsh]

vmkit full         Client.create_backup until its operation ends: a full backup of the 1 GiB
                   disk after the guest wrote 256 MiB of random data (MiB/s of the disk)
vmkit incremental  the next backup, after the guest changed 16 MiB: bytes QEMU's job read
                   (its counter, in the backup's read_bytes) and seconds
vmkit restore      Client.restore_backup of the incremental backup until the new VM runs
floor              by hand, the VM paused: `qemu-img convert` of its disk chain to raw, then
                   `borg create` of that image with the same chunker and compression. qemu-img
                   cannot write to a pipe (it resizes and seeks its output), so the image goes
                   through tmpfs; the two steps are timed together and borg alone
floor restore      `borg extract --stdout` of that archive into `qemu-img convert` to qcow2
previous image     `borg extract --stdout` of the full backup's image to /dev/null: what an
                   incremental reads back out of borg for QEMU to write the changed clusters
                   over, when the local copy of the last image is gone
virsh              `virsh backup-begin` (push mode, full, to a local qcow2) of the same disk,
                   flattened, under libvirt, where libvirtd can run: the copy alone, no borg
Goals: the incremental reads at most the changed data plus 5 %; the full backup takes at most
1.2x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import open_home, ratio, row, stop_daemon, timed
from virsh_baseline import CMDLINE, _virsh, domain_xml, ensure_libvirtd, stop_libvirtd

import vmkit
from vmkit.machine.accel import tsc_khz

VM = "bench-backup"
MiB = 1 << 20
BORG_ENV = dict(os.environ, BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
CHUNKS = ["--chunker-params", "fixed,4194304", "--compression", "lz4"]


def sh(*argv: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, check=True, capture_output=True, env=BORG_ENV, **kw)  # type: ignore[call-overload]


def guest_write(client: vmkit.Client, path: str, mib: int) -> None:
    r = client.exec(VM, ["sh", "-c", f"dd if=/dev/urandom of={path} bs=1M count={mib} "
                                     "2>/dev/null && sync"])
    assert r.exit_code == 0, r.stderr


def disk_top(home: Path) -> Path:
    """The VM's top disk layer (qcow2 over the image), from QEMU's command line."""
    argv = json.loads((home / "vms" / VM / "launched.json").read_text())["argv"]
    return Path(next(a.split("file=")[1].split(",")[0] for a in argv if "file=" in a))


def backup(client: vmkit.Client, repo: str) -> tuple[float, vmkit.models.Backup]:
    start = time.monotonic()
    client.wait_operation(client.create_backup(VM, repo).id)
    took = time.monotonic() - start
    return took, client.list_backups(VM, repo)[-1]


def floor(client: vmkit.Client, top: Path, repo: Path, tmp: Path, i: int) -> tuple[float, float]:
    """The paused VM's disk by hand into a new borg repository (nothing to deduplicate
    against, as for vmkit's first backup): seconds of convert + create, and of create."""
    sh("borg", "init", "-e", "none", str(repo))
    raw = Path("/dev/shm") / f"vmkit-bench-{os.getpid()}.raw"
    client.pause_vm(VM)
    try:
        start = time.monotonic()
        sh("qemu-img", "convert", "-U", "-O", "raw", str(top), str(raw))
        mid = time.monotonic()
        sh("borg", "create", *CHUNKS, f"{repo}::floor{i}", raw.name, cwd=raw.parent)
        end = time.monotonic()
    finally:
        client.resume_vm(VM)
        raw.unlink(missing_ok=True)
    return end - start, end - mid


def floor_restore(repo: Path, tmp: Path, i: int) -> float:
    out = tmp / "restored.qcow2"
    start = time.monotonic()
    sh("sh", "-c", 'borg extract --stdout "$1" "$2" > "$3" && qemu-img convert -f raw -O qcow2 '
                   '"$3" "$4"', "-", f"{repo}::floor{i}", f"vmkit-bench-{os.getpid()}.raw",
       str(tmp / "restored.raw"), str(out))
    took = time.monotonic() - start
    (tmp / "restored.raw").unlink()
    out.unlink()
    return took


def virsh_backup(top: Path, launched: Path, tmp: Path) -> float | str:
    """Seconds of a full `virsh backup-begin` of the flattened disk; or why it cannot run."""
    error = ensure_libvirtd()
    if error:
        return error
    argv = json.loads(launched.read_text())["argv"]
    kernel, initrd = (Path(argv[argv.index(f) + 1]) for f in ("-kernel", "-initrd"))
    flat, disk, target = tmp / "flat.raw", tmp / "disk.qcow2", tmp / "backup.qcow2"
    name = f"vmkit-bench-backup-{os.getpid()}"
    try:
        sh("qemu-img", "convert", "-U", "-O", "raw", str(top), str(flat))
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(flat), "-F", "raw", str(disk))
        xml = tmp / "domain.xml"
        xml.write_text(domain_xml(name, kernel, initrd, f"{CMDLINE} tsc_early_khz={tsc_khz()}",
                                  flat, disk, tmp / "agent.sock", tmp / "console.log", 256))
        _virsh("create", str(xml))
        time.sleep(3)
        (tmp / "backup.xml").write_text(
            f"<domainbackup mode='push'><disks><disk name='vda' type='file'><target "
            f"file='{target}'/><driver type='qcow2'/></disk></disks></domainbackup>")
        start = time.monotonic()
        _virsh("backup-begin", name, str(tmp / "backup.xml"))
        while "Backup" in _virsh("domjobinfo", name).stdout:
            time.sleep(0.05)
        return time.monotonic() - start
    except subprocess.CalledProcessError as e:
        lines = ((e.stderr or e.stdout or b"") if isinstance(e.stderr, bytes) else
                 (e.stderr or e.stdout or "").encode()).decode().strip().splitlines()
        return f"{' '.join(map(str, e.cmd[:3]))} failed: {(lines or ['no message'])[-1][:200]}"
    finally:
        _virsh("destroy", name, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-virsh", action="store_true", help="skip the libvirt baseline")
    parser.add_argument("--home", type=Path, default=None, help="VMKIT_HOME (default: a new one)")
    args = parser.parse_args()
    home, client = open_home(args.home)
    tmp = Path(tempfile.mkdtemp(prefix="vmkit-bench-backup-", dir="/tmp"))
    res: dict[str, list[float]] = {k: [] for k in (
        "full", "floor", "borg", "incr", "read", "restore", "floor_restore", "previous")}
    try:
        client.create_vm(VM, memory="256M", disk="1G", network="none")
        guest_write(client, "/root/data", 256)
        top = disk_top(home)
        for i in range(args.runs):
            # A repository of its own each run: the first backup into it is a full one.
            client.add_backup_repo(f"bench{i}", str(tmp / f"repo{i}"))
            took, full = backup(client, f"bench{i}")
            res["full"].append(took)
            both, alone = floor(client, top, tmp / f"floor{i}", tmp, i)
            res["floor"].append(both)
            res["borg"].append(alone)
            res["previous"].append(timed(sh, "sh", "-c", 'borg extract --stdout "$1" disk0.raw '
                                         '> /dev/null', "-", f"{tmp / f'repo{i}'}::{full.id}"))
            guest_write(client, f"/root/change{i}", 16)
            took, incr = backup(client, f"bench{i}")
            assert incr.kind == "incremental", incr
            res["incr"].append(took)
            res["read"].append(incr.read_bytes)
            res["restore"].append(timed(lambda: client.wait_operation(
                client.restore_backup(incr.id, name=f"{VM}-r").id)))
            client.remove_vm(f"{VM}-r", force=True)
            res["floor_restore"].append(floor_restore(tmp / f"floor{i}", tmp, i))
            print(f"  run {i + 1}: full {res['full'][-1]:.1f} s, floor {both:.1f} s, "
                  f"incremental {took:.1f} s reading {incr.read_bytes} bytes", flush=True)
        virsh: float | str = "skipped (--no-virsh)"
        if not args.no_virsh:
            try:
                virsh = virsh_backup(top, home / "vms" / VM / "launched.json", tmp)
            finally:
                stop_libvirtd()
    finally:
        for vm in client.list_vms():
            client.remove_vm(vm.name, force=True)
        for r in client.list_backup_repos():
            client.remove_backup_repo(r.name)
        shutil.rmtree(tmp, ignore_errors=True)
        if args.home is None:
            stop_daemon(home, client)

    disk_mib = [1024 / t for t in res["full"]]
    print("\nbackup of a running guest, 1 GiB disk, 256 MiB written, tiny image, 1 vCPU")
    print(row("vmkit full backup", res["full"]))
    print(row("vmkit full backup speed (disk)", disk_mib, 1, "{:.0f} MiB/s"))
    print(row("floor: qemu-img convert + borg create", res["floor"]))
    print(row("floor: borg create alone", res["borg"]))
    if isinstance(virsh, float):
        print(row("virsh backup-begin (copy only, no borg)", [virsh]))
    else:
        print(f"{'virsh backup-begin':42s} {virsh}")
    print(row("vmkit incremental (16 MiB changed)", res["incr"]))
    print(row("vmkit incremental: bytes QEMU read", res["read"], 1 / MiB, "{:.2f} MiB"))
    print(row("reading the previous image out of borg", res["previous"]))
    print(row("vmkit restore (new VM running)", res["restore"]))
    print(row("floor restore: borg extract + convert", res["floor_restore"]))
    print(ratio("ratio full vmkit / floor", res["full"], res["floor"], "goal <= 1.2x"))
    print(ratio("ratio incremental read / changed", res["read"], [16 * MiB] * args.runs,
                "goal <= 1.05x"))
    print(ratio("ratio restore vmkit / floor", res["restore"], res["floor_restore"]))


if __name__ == "__main__":
    main()

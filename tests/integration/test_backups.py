"""Backups into real borg repositories, of real guests, checked from inside the guests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmkit

from ..conftest import free_port
from .test_snapshots import COUNTER, count, out

pytestmark = pytest.mark.skipif(shutil.which("borg") is None, reason="borg is not installed")
MiB = 1 << 20


@pytest.fixture
def repo_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmkit-borg-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def repo(client: vmkit.Client, repo_dir: Path) -> Iterator[str]:
    """A borg repository of its own for the test, forgotten afterwards."""
    name = f"r{repo_dir.name[-6:].lower().replace('_', '-')}"
    client.add_backup_repo(name, str(repo_dir / "repo"))
    yield name
    for s in client.list_backup_schedules():
        if s.repo == name:
            client.remove_backup_schedule(s.vm)
    client.remove_backup_repo(name)


def write(client: vmkit.Client, vm: str, path: str, mib: int) -> str:
    """Write ``mib`` MiB of random data to ``path`` in the guest, durably; its SHA-256."""
    out(client, vm, "sh", "-c", f"dd if=/dev/urandom of={path} bs=1M count={mib} 2>/dev/null; sync")
    return out(client, vm, "sha256sum", path).split()[0]


def backup(client: vmkit.Client, vm: str, repo: str | None = None, memory: bool = False
           ) -> dict:
    client.wait_operation(client.create_backup(vm, repo, memory=memory).id)
    return client.list_backups(vm, repo)[-1]


def restore(client: vmkit.Client, backup_id: str, name: str) -> vmkit.models.Vm:
    client.wait_operation(client.restore_backup(backup_id, name=name).id)
    return client.get_vm(name)


def test_full_incremental_and_memory_backups_each_restore_their_own_data(
        client: vmkit.Client, make_vm, repo: str, repo_dir: Path) -> None:
    make_vm("bk1")
    first = write(client, "bk1", "/root/first", 8)
    full = backup(client, "bk1", repo)
    second = write(client, "bk1", "/root/second", 4)
    incr = backup(client, "bk1", repo)
    assert (full.kind, incr.kind, incr.base) == ("full", "incremental", full.id)
    # QEMU's job counter: the incremental read the 4 MiB written since, plus the
    # filesystem's own metadata, not the disk.
    assert 4 * MiB <= incr.read_bytes <= 5 * MiB < full.read_bytes
    # borg stores whole 4 MiB chunks: the changed ones, a few more than the data written.
    assert incr.deduplicated_size < 16 * MiB and incr.size == full.size
    # With memory: restored, the guest's counter process goes on from its value.
    client.exec("bk1", ["sh", "-c", COUNTER])
    time.sleep(0.5)
    pid = out(client, "bk1", "cat", "/tmp/counter.pid")
    before = count(client, "bk1")
    mem = backup(client, "bk1", repo, memory=True)
    assert mem.memory and mem.kind == "full"

    for b, name in ((full, "bk1-full"), (incr, "bk1-incr"), (mem, "bk1-mem")):
        assert restore(client, b.id, name).state == "running"
        try:
            assert out(client, name, "sha256sum", "/root/first").split()[0] == first
            has_second = client.exec(name, ["sha256sum", "/root/second"])
            if b is full:
                assert has_second.exit_code != 0
            else:
                assert has_second.stdout.decode().split()[0] == second
            if b is mem:
                restored = count(client, name)
                assert restored >= before
                assert out(client, name, "cat", "/tmp/counter.pid") == pid  # the same process
                time.sleep(0.5)
                assert count(client, name) > restored  # and it goes on counting
        finally:
            client.remove_vm(name, force=True)

    # A restore cancelled at once makes no VM.
    op = client.restore_backup(incr.id, name="bk1-never")
    client.cancel_operation(op.id)
    with pytest.raises(vmkit.VmkitError, match="cancelled: VM bk1-never was not made"):
        client.wait_operation(op.id)
    assert "bk1-never" not in {v.name for v in client.list_vms()}

    assert client.wait_operation(client.verify_backup(incr.id).id).message == \
        f"backup {incr.id} is intact"
    # Damage the repository's data: verify names the backup and fails.
    segments = sorted((repo_dir / "repo" / "data").rglob("[0-9]*"), key=lambda p: p.stat().st_size)
    biggest = segments[-1]
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    biggest.write_bytes(bytes(data))
    with pytest.raises(vmkit.VmkitError, match=f"backup {incr.id} is damaged"):
        client.wait_operation(client.verify_backup(incr.id).id)


def test_cancel_failures_and_schedules(own_daemon, repo_dir: Path) -> None:
    """One daemon of its own whose backup job reads slowly: cancel, a removed VM, a missing or
    locked repository, then a schedule that survives a restart and prunes."""
    d = own_daemon(VMKIT_BACKUP_SPEED=str(64 * MiB))
    location = str(repo_dir / "repo")
    with d.client() as c:
        c.add_backup_repo("main", location)
        c.create_vm("bkc", network="restricted")
        first = write(c, "bkc", "/root/first", 4)

        op = c.create_backup("bkc")
        while c.operation(op.id).progress < 0.05:
            time.sleep(0.05)
        c.cancel_operation(op.id)
        with pytest.raises(vmkit.VmkitError, match="cancelled"):
            c.wait_operation(op.id)
        assert c.get_vm("bkc").state == "running" and c.list_backups("bkc") == []
        subprocess.run(["borg", "check", location], check=True, capture_output=True,
                       env={"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "PATH": "/usr/bin:/bin"})
        full = backup(c, "bkc", "main")
        assert full.kind == "full"

        # A missing repository, then a locked one: one clear line each.
        shutil.move(location, location + ".away")
        with pytest.raises(vmkit.VmkitError, match="is missing"):
            c.wait_operation(c.create_backup("bkc").id)
        shutil.move(location + ".away", location)
        with subprocess.Popen(["borg", "with-lock", location, "sleep", "30"],
                              env={"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                                   "PATH": "/usr/bin:/bin"}) as lock:
            time.sleep(1)
            try:
                with pytest.raises(vmkit.VmkitError, match="is locked by another borg"):
                    c.wait_operation(c.create_backup("bkc").id)
            finally:
                lock.kill()
        second = write(c, "bkc", "/root/second", 2)
        incr = backup(c, "bkc", "main")
        assert incr.kind == "incremental" and incr.read_bytes < 3 * MiB  # still incremental
        restore(c, incr.id, "bkc-back")
        assert out(c, "bkc-back", "sha256sum", "/root/first").split()[0] == first
        assert out(c, "bkc-back", "sha256sum", "/root/second").split()[0] == second
        c.remove_vm("bkc-back", force=True)
        full_disk(c, repo_dir / "small")

        # The VM goes while its backup runs.
        write(c, "bkc", "/root/third", 16)
        op = c.create_backup("bkc")
        while c.operation(op.id).progress < 0.02:
            time.sleep(0.05)
        c.remove_vm("bkc", force=True)
        with pytest.raises(vmkit.VmkitError, match="removed during its backup"):
            c.wait_operation(op.id)
        assert [b.id for b in c.list_backups("bkc")] == [full.id, incr.id]

        # A stopped VM is backed up from its disk; a schedule prunes to the last two.
        c.create_vm("bks", network="restricted")
        c.stop_vm("bks")
        c.set_backup_schedule("bks", "5s", keep_last=2)
    d.stop()
    d.start()  # the schedule survives a restart
    with d.client() as c:
        deadline = time.monotonic() + 120
        while (s := c.list_backup_schedules()[0]).runs < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert s.runs >= 3 and s.failures == 0, s
        kept = c.list_backups("bks")
        assert len(kept) == 2 and all(b.kind == "full" for b in kept)
        c.remove_backup_schedule("bks")


def full_disk(c: vmkit.Client, where: Path) -> None:
    """A repository on a small tmpfs that a first backup fits and a second does not: one
    clear line, and the first backup is still whole."""
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(where)]
                      ).returncode != 0:
        return  # not root: the rest of the test still runs
    try:
        c.add_backup_repo("small", str(where / "repo"))
        kept = backup(c, "bkc", "small")
        used = shutil.disk_usage(where).used
        subprocess.run(["mount", "-o", f"remount,size={used + 8 * MiB}", str(where)], check=True)
        write(c, "bkc", "/root/big", 24)
        with pytest.raises(vmkit.VmkitError, match="the disk of repository small .* is full"):
            backup(c, "bkc", "small")
        assert [b.id for b in c.list_backups("bkc", "small")] == [kept.id]
        c.wait_operation(c.verify_backup(kept.id, "small").id)
        c.remove_backup_repo("small")
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def sshd(repo_dir: Path) -> Iterator[tuple[int, Path]]:
    """An sshd of the test's own on 127.0.0.1 that lets root in with a key made here: the
    'other host' of an ssh repository. Yields its port and the key."""
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs sshd (Debian's openssh-server)")
    keys = repo_dir / "ssh"
    keys.mkdir()
    for name in ("host", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                       check=True)
    (keys / "authorized_keys").write_text((keys / "id.pub").read_text())
    port = free_port()
    (keys / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nStrictModes no\nUsePAM no\nPidFile {keys / 'pid'}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
    server = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(keys / "sshd_config")])
    try:
        yield port, keys / "id"
    finally:
        server.terminate()
        server.wait()


def test_a_repository_on_another_host_over_ssh(own_daemon, sshd: tuple[int, Path],
                                               repo_dir: Path) -> None:
    """borg's own ssh, with vmkitd's BORG_RSH (here: the test's key): a backup goes to the
    other host, verifies there, and restores to a VM with its data."""
    port, key = sshd
    d = own_daemon(BORG_RSH=f"ssh -i {key} -oStrictHostKeyChecking=no "
                            "-oUserKnownHostsFile=/dev/null -oLogLevel=ERROR")
    with d.client() as c:
        c.add_backup_repo("far", f"ssh://root@127.0.0.1:{port}{repo_dir}/far")
        c.create_vm("bkssh", network=[])
        data = write(c, "bkssh", "/root/data", 2)
        c.stop_vm("bkssh")
        taken = backup(c, "bkssh", "far")
        assert (repo_dir / "far" / "config").exists()  # the repository is where ssh put it
        c.wait_operation(c.verify_backup(taken.id, "far").id)
        assert restore(c, taken.id, "bkssh2").state == "running"
        assert out(c, "bkssh2", "sha256sum", "/root/data").split()[0] == data

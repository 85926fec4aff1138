"""Export and import: VMs as portable files, checked from inside real guests."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmkit

from vmkit.formats.files import LIBVIRT_POOL

from ..conftest import Daemon
from .test_snapshots import COUNTER, count, out


@pytest.fixture
def files(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory libvirt's QEMU (user libvirt-qemu) can reach: in libvirt's pool when it
    is installed, else in /tmp (pytest's tmp is private)."""
    import tempfile

    pool = LIBVIRT_POOL if LIBVIRT_POOL.is_dir() else Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix="vmkit-lv-", dir=pool))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vm(client: vmkit.Client, make_vm) -> str:
    """A running VM with a marker file on its disk and a counter in its memory."""
    make_vm("ex1")
    client.exec("ex1", ["sh", "-c", "echo exported > /root/marker && sync"])
    client.exec("ex1", ["sh", "-c", COUNTER])
    time.sleep(0.5)
    return "ex1"


@pytest.fixture
def other(own_daemon) -> Iterator[vmkit.Client]:
    """Another vmkit host (its own VMKIT_HOME and daemon)."""
    d: Daemon = own_daemon()
    with d.client() as c:
        yield c


def vm_state(home: Path) -> tuple[list[str], list[str]]:
    """What a failed import must not change: the disk layers and work directories."""
    transfers = home / "transfers"
    return (sorted(p.name for p in (home / "disks").iterdir()),
            sorted(p.name for p in transfers.iterdir()) if transfers.exists() else [])


def test_export_with_memory_resumes_on_another_host(client, vm, other, files) -> None:
    pid = out(client, vm, "cat", "/tmp/counter.pid")
    done = client.export_vm(vm, files / "ex1.vmkit", memory=True)
    at_export = count(client, vm)
    assert done["bytes"] == (files / "ex1.vmkit").stat().st_size
    # The source keeps running, unchanged.
    time.sleep(0.3)
    assert client.get_vm(vm)["state"] == "running" and count(client, vm) > at_export
    with tarfile.open(files / "ex1.vmkit") as tar:
        assert tar.getnames() == ["vmkit.json", "disk.qcow2", "state"]
    imported = other.import_vm(files / "ex1.vmkit")
    assert imported["name"] == vm and imported["state"] == "running"
    assert imported["ports"] == [] and imported["mac"] == client.get_vm(vm)["mac"]
    # The same process, counting on from where it was when exported: no reset.
    assert out(other, vm, "cat", "/tmp/counter.pid") == pid
    resumed = count(other, vm)
    assert at_export - 10 <= resumed
    time.sleep(0.5)
    assert count(other, vm) > resumed
    assert out(other, vm, "cat", "/root/marker") == "exported"
    assert out(other, vm, "hostname") == vm


def test_disk_only_export_boots_and_a_stopped_vm_stays_stopped(client, vm, other, files
                                                               ) -> None:
    client.export_vm(vm, files / "live.vmkit")  # running, without memory: boots on import
    booted = other.import_vm(files / "live.vmkit")
    assert booted["state"] == "running"
    assert out(other, vm, "cat", "/root/marker") == "exported"
    assert other.exec(vm, ["test", "-e", "/tmp/count"]).exit_code == 1  # a fresh boot
    other.remove_vm(vm, force=True)
    client.stop_vm(vm)
    client.export_vm(vm, files / "stopped.vmkit")
    assert other.import_vm(files / "stopped.vmkit")["state"] == "stopped"
    other.start_vm(vm)
    assert out(other, vm, "cat", "/root/marker") == "exported"


def test_memory_export_needs_a_running_vm(client, vm, files) -> None:
    client.stop_vm(vm)
    with pytest.raises(vmkit.InvalidInputError, match="no memory to export"):
        client.export_vm(vm, files / "x.vmkit", memory=True)
    with pytest.raises(vmkit.InvalidInputError, match="vmkit format"):
        client.export_vm(vm, files / "x.ova", format="ova", memory=True)
    assert not list(files.iterdir())  # nothing written
    assert client.get_vm(vm)["state"] == "stopped"


def test_a_renamed_import_is_a_copy_with_its_own_identity(client, vm, files, daemon) -> None:
    client.export_vm(vm, files / "ex1.vmkit", memory=True)
    with pytest.raises(vmkit.ConflictError, match="--name"):
        client.import_vm(files / "ex1.vmkit")
    try:
        copy = client.import_vm(files / "ex1.vmkit", name="ex1-copy")
        assert copy["state"] == "running"
        assert out(client, "ex1-copy", "hostname") == "ex1-copy"
        assert copy["mac"] != client.get_vm(vm)["mac"]
        assert (out(client, "ex1-copy", "cat", "/etc/machine-id")
                != out(client, vm, "cat", "/etc/machine-id"))
        assert out(client, "ex1-copy", "cat", "/root/marker") == "exported"
    finally:
        client.remove_vm("ex1-copy", force=True)


def test_truncated_or_altered_exports_are_refused(client, vm, files, daemon) -> None:
    client.export_vm(vm, files / "ex1.vmkit")
    data = (files / "ex1.vmkit").read_bytes()
    (files / "cut.vmkit").write_bytes(data[:len(data) // 2])
    altered = bytearray(data)
    altered[len(data) // 3] ^= 0xFF  # inside the disk
    (files / "altered.vmkit").write_bytes(bytes(altered))
    before = vm_state(daemon.home)
    with pytest.raises(vmkit.InvalidInputError, match="truncated"):
        client.import_vm(files / "cut.vmkit", name="cut")
    with pytest.raises(vmkit.InvalidInputError, match="does not match its checksum"):
        client.import_vm(files / "altered.vmkit", name="altered")
    assert vm_state(daemon.home) == before  # nothing left behind
    assert [v["name"] for v in client.list_vms()] == [vm]


def test_ova_round_trip(client, vm, other, files) -> None:
    client.export_vm(vm, files / "ex1.ova", format="ova")
    with tarfile.open(files / "ex1.ova") as tar:
        # The descriptor first, then the manifest: the order the OVF standard asks for.
        assert tar.getnames() == ["ex1.ovf", "ex1.mf", "ex1-disk1.vmdk"]
        tar.extractall(files / "ova", filter="data")
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", str(files / "ova" / "ex1-disk1.vmdk")],
        capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    ovf = (files / "ova" / "ex1.ovf").read_text()
    assert "<rasd:VirtualQuantity>256</rasd:VirtualQuantity>" in ovf
    imported = other.import_vm(files / "ex1.ova", name="from-ova")
    assert imported["state"] == "running" and imported["memory_mib"] == 256
    assert out(other, "from-ova", "cat", "/root/marker") == "exported"


def test_an_ova_with_an_unsupported_disk_is_refused(client, files, daemon) -> None:
    ova = files / "other.ova"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", str(files / "d.vhd"), "64M"],
                   check=True)
    descriptor = (
        '<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><References>'
        '<File ovf:href="d.vhd" ovf:id="f1"/></References><DiskSection><Info/>'
        '<Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="67108864" '
        'ovf:format="http://go.microsoft.com/fwlink/?LinkId=137171"/></DiskSection>'
        '<VirtualSystem ovf:id="other"><Info/></VirtualSystem></Envelope>')
    (files / "other.ovf").write_text(descriptor)
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(files / "other.ovf", "other.ovf")
        tar.add(files / "d.vhd", "d.vhd")
    before = vm_state(daemon.home)
    with pytest.raises(vmkit.InvalidInputError, match="unsupported format"):
        client.import_vm(ova)
    assert vm_state(daemon.home) == before
    with pytest.raises(vmkit.NotFoundError):
        client.get_vm("other")


def test_plain_disk_images_import(client, vm, other, files, reachable) -> None:
    client.export_vm(vm, reachable / "lv", format="libvirt")
    qcow2 = reachable / "lv" / "ex1.qcow2"
    raw = files / "ex1-raw.img"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    for path, name in ((qcow2, "from-qcow2"), (raw, "from-raw")):
        assert other.import_vm(path, name=name)["state"] == "running"
        assert out(other, name, "cat", "/root/marker") == "exported"
    assert other.import_vm(raw)["name"] == "ex1-raw"  # named after the file


def test_disks_that_cannot_be_imported(client, files, daemon) -> None:
    (files / "notes.txt").write_text("not a disk\n" * 100)
    mbr = bytearray(1 << 20)
    mbr[510:512] = b"\x55\xaa"
    (files / "partitioned.img").write_bytes(bytes(mbr))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(files / "notes.txt"),
                    "-F", "raw", str(files / "backed.qcow2")], check=True)
    (files / "empty.img").write_bytes(b"")
    before = vm_state(daemon.home)
    for path, why in (("notes.txt", "not a vmkit export"), ("partitioned.img", "partitioned"),
                      ("backed.qcow2", "refers to other files"), ("empty.img", "empty")):
        with pytest.raises(vmkit.InvalidInputError, match=why):
            client.import_vm(files / path)
    assert vm_state(daemon.home) == before
    assert client.list_vms() == []


def test_libvirt_export_refuses_a_place_libvirt_cannot_read(client, files) -> None:
    # pytest's tmp is private (0700): libvirt's QEMU could not open the disk there. Checked
    # by the client before asking vmkitd for anything, so no VM is needed.
    with pytest.raises(vmkit.InvalidInputError) as refused:
        client.export_vm("ex1", files / "lv", format="libvirt")
    message = str(refused.value)
    assert "libvirt-qemu" in message and f"-o {LIBVIRT_POOL}/lv" in message
    assert not (files / "lv").exists()


def _virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True,
                          text=True, timeout=60)


def _libvirt_missing() -> str | None:
    """Why libvirt cannot start a domain here, or None: libvirtd answers, and virtlogd (which
    libvirt hands each QEMU's log to) listens."""
    if shutil.which("virsh") is None or _virsh("version").returncode != 0:
        return "needs libvirtd (Debian's libvirt-daemon-system) running"
    with socket.socket(socket.AF_UNIX) as s:
        if s.connect_ex("/run/libvirt/virtlogd-sock") != 0:
            return "needs virtlogd running beside libvirtd (libvirt-daemon-system starts both)"
    return None


def test_libvirt_export_defines_and_boots_in_virsh(client, make_vm, reachable) -> None:
    if why := _libvirt_missing():
        pytest.skip(why)  # before booting anything
    # Into libvirt's pool, as the README says: the packaged libvirtd runs QEMU as libvirt-qemu.
    vm = make_vm("ex1")["name"]
    client.exec(vm, ["sh", "-c", "echo exported > /root/marker && sync"])
    client.export_vm(vm, reachable / "lv", format="libvirt")
    domain = "ex1"
    _virsh("destroy", domain)
    _virsh("undefine", domain)
    defined = _virsh("define", str(reachable / "lv" / "ex1.xml"))
    assert defined.returncode == 0, defined.stderr
    try:
        started = _virsh("start", domain)
        assert started.returncode == 0, started.stderr
        # Booted to userspace: the guest agent answers, and reads the exported disk.
        ping = '{"execute":"guest-ping"}'
        deadline = time.monotonic() + 60
        while _virsh("qemu-agent-command", domain, ping).returncode != 0:
            assert time.monotonic() < deadline, "the guest agent never answered in libvirt"
            time.sleep(1)
        run = json.dumps({"execute": "guest-exec", "arguments": {
            "path": "/bin/cat", "arg": ["/root/marker"], "capture-output": True}})
        pid = json.loads(_virsh("qemu-agent-command", domain, run).stdout)["return"]["pid"]
        status = json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}})
        while not (result := json.loads(_virsh("qemu-agent-command", domain, status).stdout)[
                "return"])["exited"]:
            time.sleep(0.2)
        assert base64.b64decode(result["out-data"]) == b"exported\n"
    finally:
        _virsh("destroy", domain)
        _virsh("undefine", domain)


def test_on_the_command_line(daemon: Daemon, vm, files) -> None:
    target = files / "web.vmkit"
    done = daemon.cli("export", vm, "-o", str(target), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    for args, code, why in (
            (("export", vm, "-o", str(target)), 1, b"exists"),
            (("export", vm, "-o", str(files / "x.ova"), "-f", "ova", "--memory"), 1,
             b"vmkit format"),
            (("export", "nope", "-o", str(files / "y")), 1, b"no VM named"),
            (("export", vm, "-o", str(files / "y"), "-f", "zip"), 2, b"zip"),
            (("import", str(files / "missing.vmkit")), 2, b"Invalid value for 'FILE'"),
            (("import", str(target)), 1, b"--name")):
        r = daemon.cli(*args)
        assert r.returncode == code and why in r.stderr, (args, r.stderr)
        assert b"Traceback" not in r.stderr
    assert not (files / "y").exists() and not (files / "x.ova").exists()
    imported = daemon.cli("import", str(target), "-n", "ex1-cli", "--no-ports")
    try:
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout == b"ex1-cli\n"
    finally:
        daemon.cli("rm", "-f", "ex1-cli")

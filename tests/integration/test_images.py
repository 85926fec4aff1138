"""Images a user brings along, through the vmkit command: an installer ISO booted from the CD
drive into a blank disk (SeaBIOS and OVMF), disk images in other formats imported and booted
by the firmware, bad files refused cleanly, and an image build cancelled halfway.

The ISOs are tests/isos.py's marker ISOs: GRUB prints a marker on the serial port, so the
marker in 'vmkit logs' means the firmware really booted that CD (or disk). Each test uses a
marker of its own, so no test can pass on another's output. No VM has a network card.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import vmkit
from vmkit.images.debian import STAGING

from ..conftest import Daemon
from ..isos import grub_mkrescue, has_bios, has_efi, make_marker_iso, make_plain_iso

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(grub_mkrescue() is None or not has_bios(),
                       reason="the marker ISOs need grub-mkrescue and grub-pc-bin"),
]

MARKER_TIMEOUT = 30.0  # seconds: SeaBIOS prints the marker after ~1 s under TCG, OVMF ~6 s


# --- helpers ---------------------------------------------------------------------------------

def ok(d: Daemon, *args: str) -> str:
    r = d.cli(*args)
    assert r.returncode == 0, (args, r.stderr.decode())
    return r.stdout.decode()


def fails(d: Daemon, *args: str, match: str) -> str:
    """The command fails as vmkit promises: non-zero exit, one line on stderr, no traceback."""
    r = d.cli(*args)
    err = r.stderr.decode()
    assert r.returncode != 0, (args, r.stdout.decode(), err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err
    return err


def images(d: Daemon) -> dict[str, dict]:
    return {i["name"]: i for i in json.loads(ok(d, "image", "ls", "--json"))}


def build_dirs(d: Daemon) -> list[Path]:
    """What an import or build left half-made in the image store."""
    return list((d.home / "images").glob(".build-*"))


def processes_under(prefix: Path) -> list[str]:
    """The command lines of the processes that name a path starting with ``prefix``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if any(a.startswith(str(prefix).encode()) for a in argv):
                found.append(b" ".join(argv).decode(errors="replace"))
    return found


def staged(prefix: Path) -> list[Path]:
    """The build roots whose names start with ``prefix``."""
    return list(prefix.parent.glob(prefix.name + "*"))


def debootstraps(home: Path) -> str:
    """pgrep's lines for the debootstraps building into ``home`` (not 'pgrep -x debootstrap':
    another vmkit on this host may be building an image of its own)."""
    return subprocess.run(["pgrep", "-a", "-f", f"debootstrap .*{home}/"], check=False,
                          capture_output=True, text=True).stdout


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def wait_for_log(d: Daemon, vm: str, marker: str, timeout: float = MARKER_TIMEOUT) -> str:
    """The VM's serial log once it shows ``marker``, or as it is at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        log = ok(d, "logs", vm)
        if marker in log or time.monotonic() > deadline:
            return log
        time.sleep(0.5)


@dataclass
class Made:
    """What a test made, removed after it whether it passed or not."""
    vms: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


@pytest.fixture
def made(client: vmkit.Client) -> Iterator[Made]:
    made = Made()
    yield made
    for name in made.vms:  # first: an image a VM uses cannot be removed
        with contextlib.suppress(vmkit.NotFoundError):
            client.remove_vm(name, force=True)
    for name in made.images:
        with contextlib.suppress(vmkit.NotFoundError):
            client.remove_image(name)


# --- installing from a CD --------------------------------------------------------------------

def test_install_iso_boots_from_the_cd_under_bios(daemon: Daemon, tmp_path: Path,
                                                   made: Made) -> None:
    marker = "VMKIT-CD-BIOS-4e1f"
    iso = make_marker_iso(tmp_path / "inst-bios.iso", marker)
    made.vms.append("cd-bios")
    made.images.append("inst-bios")  # the CLI names the image after the file
    assert "inst-bios" not in images(daemon)

    out = ok(daemon, "run", "--cdrom", str(iso), "--disk", "1G", "-n", "cd-bios", "-d",
             "--network", "none")
    assert out.split() == ["cd-bios"]
    image = images(daemon)["inst-bios"]
    assert (image["kind"], image["format"]) == ("iso", "raw")
    assert image["bootable"] == ("bios+uefi" if has_efi() else "bios")

    log = wait_for_log(daemon, "cd-bios", marker)
    assert marker in log, log[-2000:]
    vm = json.loads(ok(daemon, "inspect", "cd-bios", "--json"))
    assert vm["image"] is None and vm["cdrom"] == "inst-bios"
    assert (vm["state"], vm["firmware"], vm["disk"], vm["network"]) == (
        "running", "bios", "1G", "none")

    # The CD is in use: the image stays, and the error says by whom.
    fails(daemon, "image", "rm", "inst-bios", match="cd-bios")
    assert "inst-bios" in images(daemon)
    assert (daemon.home / "images" / image["digest"]).is_dir()

    ok(daemon, "rm", "-f", "cd-bios")
    ok(daemon, "image", "rm", "inst-bios")
    assert "inst-bios" not in images(daemon)
    assert not (daemon.home / "images" / image["digest"]).exists()


@pytest.mark.skipif(not has_efi(), reason="a UEFI-bootable ISO needs grub-efi-amd64-bin, mtools")
def test_install_iso_boots_from_the_cd_under_uefi(daemon: Daemon, tmp_path: Path,
                                                   made: Made) -> None:
    marker = "VMKIT-CD-UEFI-93b2"
    iso = make_marker_iso(tmp_path / "inst-uefi.iso", marker)
    made.vms.append("cd-uefi")
    made.images.append("inst-uefi")

    ok(daemon, "run", "--cdrom", str(iso), "--disk", "1G", "--firmware", "uefi", "-n",
       "cd-uefi", "-d", "--network", "none")
    log = wait_for_log(daemon, "cd-uefi", marker)
    assert marker in log, log[-2000:]  # OVMF echoes GRUB's console: "MARKERMARKER"
    vm = json.loads(ok(daemon, "inspect", "cd-uefi", "--json"))
    assert (vm["image"], vm["cdrom"], vm["firmware"]) == (None, "inst-uefi", "uefi")
    assert images(daemon)["inst-uefi"]["kind"] == "iso"


# --- importing disks -------------------------------------------------------------------------

def test_disk_images_are_imported_and_booted_by_the_firmware(daemon: Daemon, tmp_path: Path,
                                                             made: Made) -> None:
    marker = "VMKIT-DISK-c5d8"
    # A grub-mkrescue ISO is hybrid: as a hard disk, its MBR boots the same GRUB.
    iso = make_marker_iso(tmp_path / "hybrid.iso", marker)
    for fmt in ("vmdk", "vdi", "qcow2"):
        qemu_img("convert", "-f", "raw", "-O", fmt, str(iso), str(tmp_path / f"disk.{fmt}"))
    # The format comes from the content: the ISO's bytes under a disk's name are still an
    # ISO; without the ISO 9660 signature they are a raw disk (the hybrid's partition table).
    shutil.copyfile(iso, tmp_path / "disk.img")
    raw = tmp_path / "disk.raw"
    shutil.copyfile(iso, raw)
    with open(raw, "r+b") as f:
        f.seek(0x8001)
        assert f.read(5) == b"CD001"
        f.seek(0x8001)
        f.write(b"XXXXX")
    names = {"d-vmdk": "disk.vmdk", "d-vdi": "disk.vdi", "d-qcow2": "disk.qcow2",
             "d-qcow2-b": "disk.qcow2", "d-img": "disk.img", "d-raw": "disk.raw"}
    made.vms += ["disk-vmdk", "disk-qcow2"]
    made.images += list(names)

    for name, file in names.items():
        assert ok(daemon, "image", "import", str(tmp_path / file), "--name", name).split() \
            == [name]
    got = images(daemon)
    assert json.loads(ok(daemon, "image", "inspect", "d-vmdk", "--json")) == got["d-vmdk"]

    def store_file(name: str) -> Path:
        return daemon.home / "images" / got[name]["digest"] / (
            "cdrom.iso" if got[name]["kind"] == "iso" else f"disk.{got[name]['format']}")

    for name in ("d-vmdk", "d-vdi"):  # converted to qcow2
        assert (got[name]["kind"], got[name]["format"]) == ("disk", "qcow2"), got[name]
        assert got[name]["bootable"] in ("mbr", "gpt"), got[name]
        assert json.loads(qemu_img("info", "--output=json", "-U", str(store_file(name))))[
            "format"] == "qcow2"
    assert (got["d-qcow2"]["kind"], got["d-qcow2"]["format"]) == ("disk", "qcow2")
    assert store_file("d-qcow2").read_bytes() == (tmp_path / "disk.qcow2").read_bytes()
    assert (got["d-img"]["kind"], got["d-img"]["format"]) == ("iso", "raw")
    assert (got["d-raw"]["kind"], got["d-raw"]["format"]) == ("disk", "raw")
    assert got["d-raw"]["bootable"] in ("mbr", "gpt")

    # Content-addressed: the same file twice is one image directory under two names, and
    # removing one name leaves the other whole. (qemu-img converts deterministically, so
    # the vmdk and vdi, now qcow2, may well share that directory too.)
    assert got["d-qcow2"]["digest"] == got["d-qcow2-b"]["digest"]
    assert got["d-qcow2"]["digest"] != got["d-raw"]["digest"]
    ok(daemon, "image", "rm", "d-qcow2")
    assert "d-qcow2" not in images(daemon) and "d-qcow2-b" in images(daemon)
    assert store_file("d-qcow2-b").is_file()

    # Both boot (together, to save time): the converted vmdk and what is left of the qcow2.
    for vm, image in (("disk-vmdk", "d-vmdk"), ("disk-qcow2", "d-qcow2-b")):
        assert ok(daemon, "run", image, "-n", vm, "-d", "--network", "none").split() == [vm]
    for vm, image in (("disk-vmdk", "d-vmdk"), ("disk-qcow2", "d-qcow2-b")):
        log = wait_for_log(daemon, vm, marker)
        assert marker in log, (vm, log[-2000:])
        desc = json.loads(ok(daemon, "inspect", vm, "--json"))
        assert (desc["image"], desc["cdrom"], desc["state"]) == (image, None, "running")
    fails(daemon, "image", "rm", "d-vmdk", match="disk-vmdk")


# --- bad input -------------------------------------------------------------------------------

def test_bad_input_is_refused_and_leaves_nothing(daemon: Daemon, client: vmkit.Client,
                                                 tmp_path: Path, made: Made) -> None:
    iso = make_marker_iso(tmp_path / "bad-input.iso", "VMKIT-BAD-INPUT-0a6c")
    plain = make_plain_iso(tmp_path / "plain.iso")
    text = tmp_path / "notes.txt"
    text.write_text("not a disk image\n" * 100)
    corrupt = tmp_path / "cut.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(iso), str(corrupt))
    os.truncate(corrupt, corrupt.stat().st_size // 2)
    vhdx = tmp_path / "disk.vhdx"
    qemu_img("create", "-f", "vhdx", str(vhdx), "64M")
    made.images.append("taken")
    made.vms += ["bad-vm1", "bad-vm2", "bad-vm3"]
    ok(daemon, "image", "import", str(iso), "--name", "taken")

    cases = [
        (("image", "import", str(plain), "--name", "bad-plain"), "not bootable"),
        (("image", "import", str(text), "--name", "bad-text"), "does not look like a disk"),
        (("image", "import", str(corrupt), "--name", "bad-cut"), "qcow2"),
        (("image", "import", str(vhdx), "--name", "bad-vhdx"), "unsupported format vhdx"),
        (("image", "import", str(iso), "--name", "taken"), "exists"),
        (("image", "import", str(tmp_path / "nosuch.qcow2"), "--name", "bad-missing"),
         "nosuch.qcow2"),
        (("run", "--cdrom", "nosuch-image", "--disk", "1G", "-n", "bad-vm1", "-d",
          "--network", "none"), "nosuch-image"),
        (("run", "--cdrom", str(iso), "-n", "bad-vm2", "-d", "--network", "none"), "--disk"),
        (("run", "--firmware", "efi", "-n", "bad-vm3", "-d", "--network", "none"),
         "invalid firmware 'efi'"),
    ]
    before = images(daemon)
    assert "taken" in before
    before_vms = client.list_vms()
    for args, match in cases:  # after each: the same images and VMs (the API is quicker)
        err = fails(daemon, *args, match=match)
        assert client.list_images() == list(before.values()), (args, err)
        assert client.list_vms() == before_vms, (args, err)
        assert build_dirs(daemon) == [], (args, err)
    assert images(daemon) == before
    assert not any((daemon.home / "vms" / vm).exists() for vm in made.vms)


# --- cancelling a build ----------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("debootstrap") is None or os.geteuid() != 0,
                    reason="the debian builder needs debootstrap and root")
def test_cancelled_build_leaves_nothing(daemon: Daemon, client: vmkit.Client) -> None:
    assert daemon.proc is not None
    # debootstrap builds the root in memory (images/debian.py), in a directory named by vmkitd
    building = Path(STAGING or tempfile.gettempdir()) / f"vmkit-debian-{daemon.proc.pid}-"
    op = client.build_image("deb-cancel", builder="debian", minimal=True)
    try:
        deadline = time.monotonic() + 120
        while (now := client.operation(op["id"]))["progress"] <= 0.05:
            assert now["state"] == "running", now
            assert time.monotonic() < deadline, f"no progress in 120 s: {now}"
            time.sleep(0.2)
        assert now["state"] == "running", now  # debootstrap is downloading or unpacking
        # The build is under way in the store's .build-* directory, and the checks below
        # see it: they would see what the cancel failed to stop.
        assert build_dirs(daemon) and staged(building)
        assert debootstraps(daemon.home) and processes_under(building)
    except BaseException:
        with contextlib.suppress(vmkit.VmkitError):  # do not leave it building
            client.cancel_operation(op["id"])
        raise
    assert client.cancel_operation(op["id"])["id"] == op["id"]
    deadline = time.monotonic() + 30
    while (now := client.operation(op["id"]))["state"] == "running":
        assert time.monotonic() < deadline, f"still running 30 s after cancel: {now}"
        time.sleep(0.2)
    assert now["state"] == "failed" and "cancelled" in now["error"], now
    assert "deb-cancel" not in {i["name"] for i in client.list_images()}
    assert build_dirs(daemon) == [] and staged(building) == []
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(
            (str(daemon.home), str(building)))]
    assert mounts == []
    # No debootstrap of this home's build, nor anything it started there (dpkg, wget...).
    assert debootstraps(daemon.home) == ""
    assert processes_under(building) == []

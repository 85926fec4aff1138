"""Forensics from outside the guest: memory dumps, network captures, disk diffs."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import vmkit

from ..conftest import free_port


def test_a_memory_dump_holds_what_the_guest_has_in_memory(client, make_vm, tmp_path) -> None:
    make_vm("fx1")
    # Made in the guest, never sent whole over the agent: found in the dump only if it came
    # from guest memory (a tmpfs file lives in the page cache).
    client.exec("fx1", ["sh", "-c", "echo MARK-$((6007 * 7))-IN-RAM > /tmp/marker"])
    done = client.dump_vm("fx1", tmp_path / "fx1.elf")
    core = (tmp_path / "fx1.elf").read_bytes()
    assert done["bytes"] == len(core) > 256 << 20  # all of RAM, plus the ELF headers
    assert core[:4] == b"\x7fELF" and core[16] == 4  # ET_CORE
    assert b"MARK-42049-IN-RAM" in core
    assert client.get_vm("fx1")["state"] == "running"  # it ran on afterwards
    assert client.exec("fx1", ["true"]).exit_code == 0


def test_dump_errors(client, make_vm, tmp_path) -> None:
    make_vm("fx2")
    client.stop_vm("fx2")
    with pytest.raises(vmkit.InvalidStateError, match="running"):
        client.dump_vm("fx2", tmp_path / "x.elf")
    with pytest.raises(vmkit.InvalidInputError, match="not a writable directory"):
        client.dump_vm("fx2", tmp_path / "missing" / "x.elf")
    assert not list(tmp_path.iterdir())


def test_a_capture_holds_the_vms_traffic_as_tshark_reads_it(client, make_vm, tmp_path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("needs tshark (Debian package tshark)")
    port = free_port()
    make_vm("fx3", ports=[f"{port}:8080"])
    client.exec("fx3", ["sh", "-c", "mkdir -p /www && echo captured > /www/page && "
                                    "httpd -p 8080 -h /www"])
    client.start_capture("fx3")
    with pytest.raises(vmkit.ConflictError, match="already"):
        client.start_capture("fx3")
    deadline = time.monotonic() + 20
    while True:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/page", timeout=5).text == "captured\n"
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    client.stop_capture("fx3", tmp_path / "fx3.pcap")
    read = subprocess.run(["tshark", "-r", str(tmp_path / "fx3.pcap"), "-Y", "http",
                           "-T", "fields", "-e", "http.request.uri", "-e", "http.file_data"],
                          capture_output=True, text=True, check=True)
    assert "/page" in read.stdout
    with pytest.raises(vmkit.NotFoundError, match="not being captured"):
        client.stop_capture("fx3", tmp_path / "again.pcap")


def test_a_vm_without_a_nic_has_nothing_to_capture(client, make_vm) -> None:
    make_vm("fx4", network="none")
    with pytest.raises(vmkit.InvalidInputError, match="no network card"):
        client.start_capture("fx4")


def test_forensics_on_the_command_line(daemon, make_vm, tmp_path: Path) -> None:
    make_vm("fx5")
    r = daemon.cli("dump", "fx5", "-o", str(tmp_path / "m.elf"))
    assert r.returncode == 0 and (tmp_path / "m.elf").exists(), r.stderr
    r = daemon.cli("capture", "fx5", "-o", str(tmp_path / "c.pcap"), "-t", "0.5")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c.pcap").read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # pcap, little-endian
    r = daemon.cli("dump", "fx5", "-o", str(tmp_path / "m.elf"))
    assert r.returncode == 1 and b"exists" in r.stderr


def test_a_disposable_vm_leaves_nothing_behind(client, daemon) -> None:
    images = client.list_images()
    layers = set((daemon.home / "disks").iterdir())
    vm = client.create_vm("fx6", disposable=True)
    try:
        assert vm["disposable"] and vm["auto_remove"] and vm["network"] == "none"
        nics = client.exec("fx6", ["ls", "/sys/class/net"]).stdout.split()
        assert nics == [b"lo"]  # no network card: nothing gets out
        assert client.exec("fx6", ["sh", "-c", "echo evil > /root/dropped; sync"]).exit_code == 0
        client.stop_vm("fx6")
        with pytest.raises(vmkit.NotFoundError):
            client.get_vm("fx6")
    finally:
        with contextlib.suppress(vmkit.NotFoundError):
            client.remove_vm("fx6", force=True)
    assert set((daemon.home / "disks").iterdir()) == layers  # its disk layer is gone too
    assert client.list_images() == images


def test_diff_lists_what_changed_on_the_disk(client, make_vm, daemon) -> None:
    make_vm("fx7")
    client.exec("fx7", ["sh", "-c", "echo dropped > /root/dropped && rm /etc/inittab && "
                                    "echo changed >> /etc/profile && sync"])
    since_image = {(c["change"], c["path"]) for c in client.diff("fx7")}
    assert {("added", "/root/dropped"), ("removed", "/etc/inittab"),
            ("changed", "/etc/profile")} <= since_image
    client.create_snapshot("fx7", "s1")
    client.exec("fx7", ["sh", "-c", "mkdir /root/later && echo 2 > /root/later/f && "
                                    "rm /root/dropped && sync"])
    assert client.diff("fx7", "s1") == [
        {"change": "removed", "path": "/root/dropped", "type": "file"},
        {"change": "added", "path": "/root/later", "type": "dir"},
        {"change": "added", "path": "/root/later/f", "type": "file"}]
    client.create_snapshot("fx7", "s2")
    assert client.diff("fx7", "s1", "s2") == client.diff("fx7", "s1")
    assert client.diff("fx7", "s2") == []
    with pytest.raises(vmkit.NotFoundError, match="no snapshot 'nope'"):
        client.diff("fx7", "nope")
    r = daemon.cli("diff", "fx7", "s1")
    assert r.returncode == 0
    assert r.stdout.decode().splitlines() == ["D /root/dropped", "A /root/later",
                                              "A /root/later/f"]

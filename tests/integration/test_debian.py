"""The debian image: built with debootstrap, booted on a q35 PC with its own kernel, and
provisioned by the real cloud-init in the guest.

Every CI run builds the minimal variant (systemd, kernel, guest agent: no ssh, no cloud-init),
boots it and forks it. The full image takes minutes to build and each boot with cloud-init about
100 s under TCG, so those tests carry the 'debian' marker and run when VMKIT_TEST_DEBIAN=1
(the image is kept in ~/.cache/vmkit-tests/debian-home between local runs):

    VMKIT_TEST_DEBIAN=1 python -m pytest tests/integration/test_debian.py -v
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEB_CACHE, Daemon, free_port, kill_qemus

pytestmark = pytest.mark.integration
as_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap"),
                             reason="debootstrap needs root and the debootstrap package")
full = pytest.mark.skipif(not os.environ.get("VMKIT_TEST_DEBIAN"),
                          reason="set VMKIT_TEST_DEBIAN=1: builds and boots the full image "
                                 "(minutes)")
DEBIAN_HOME = DEB_CACHE.parent / "debian-home"


def ok(d: Daemon, *args: str, timeout: float = 600) -> str:
    result = d.cli(*args, timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def failed(d: Daemon, *args: str) -> str:
    """Run a command that must fail; its message, which must be one clean line."""
    result = d.cli(*args)
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout.decode()
    assert "Traceback" not in err
    return err


def guest(d: Daemon, name: str, script: str) -> str:
    return ok(d, "exec", name, "--", "sh", "-c", script).strip()


# A TCP service that answers with the guest's hostname, run by systemd (forks inherit it).
HELLO = ("use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 7000, Listen => 5, "
         "ReuseAddr => 1) or die $!; while (my $c = $s->accept) { open(my $h, '<', "
         "'/proc/sys/kernel/hostname'); print {$c} scalar <$h>; close $c }")


def hello(port: int, timeout: float = 10) -> str:
    """What the service behind host port ``port`` answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return s.recv(100).decode().strip()


def link_local(mac: str) -> str:
    """The IPv6 link-local address the kernel derives from ``mac`` (modified EUI-64)."""
    b = bytes.fromhex(mac.replace(":", ""))
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes([b[0] ^ 2]) + b[1:3]
                                     + b"\xff\xfe" + b[3:]))


def identity(d: Daemon, name: str) -> dict[str, Any]:
    """What a guest is known by: hostname, machine-id, MAC and addresses of its NIC."""
    [nic] = [n for n in json.loads(guest(d, name, "ip -j addr")) if n["ifname"] != "lo"]
    addrs = {(a["family"], a["scope"]): a["local"] for a in nic["addr_info"]}
    return {"hostname": guest(d, name, "hostname"),
            "machine_id": guest(d, name, "cat /etc/machine-id"), "mac": nic["address"],
            "ipv4": addrs.get(("inet", "global")), "link_local": addrs.get(("inet6", "link"))}


# --- every run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minimal(daemon: Daemon) -> Iterator[dict[str, Any]]:
    """The minimal image, built for this module's tests and removed after them."""
    ok(daemon, "image", "build", "debian", "--minimal", "--name", "debian-min", "--size", "2G",
       timeout=900)
    yield json.loads(ok(daemon, "image", "inspect", "debian-min", "--json"))
    ok(daemon, "image", "rm", "debian-min")


@as_root
def test_the_minimal_image_builds_into_the_store_and_boots_to_systemd(
        daemon: Daemon, minimal: dict[str, Any]) -> None:
    image = minimal
    assert image["kind"] == "debian" and image["disk"] == "2G" and not image["cloud_init"]
    stored = daemon.home / "images" / image["digest"]
    assert sorted(p.name for p in stored.iterdir()) == ["initrd.img", "rootfs.raw", "vmlinuz"]
    assert all(p.stat().st_mode & 0o222 == 0 for p in stored.iterdir())  # read-only
    assert not list((daemon.home / "images").glob(".build-*"))
    try:
        ok(daemon, "run", "debian-min", "-n", "deb-min", "-d", "--cpus", "2", "-m", "512M",
           "--network", "restricted")
        state = guest(daemon, "deb-min", "systemctl is-system-running --wait; true")
        assert state in ("running", "degraded"), state
        assert "Debian GNU/Linux" in guest(daemon, "deb-min", "cat /etc/os-release")
        assert guest(daemon, "deb-min", "findmnt -no SOURCE,FSTYPE /") == "/dev/vda ext4"
        assert guest(daemon, "deb-min", "hostname") == "deb-min"
        # The image itself is never written: the guest wrote to its own overlay.
        guest(daemon, "deb-min", "echo mine > /root/mark && sync")
        assert json.loads(ok(daemon, "image", "inspect", "debian-min", "--json")
                          )["digest"] == image["digest"]
        ok(daemon, "stop", "deb-min")
        assert "used by deb-min" in failed(daemon, "image", "rm", "debian-min")
    finally:
        daemon.cli("rm", "-f", "deb-min")


@as_root
def test_a_fork_of_a_debian_vm_is_reachable_and_itself_everywhere(
        daemon: Daemon, minimal: dict[str, Any]) -> None:
    src_port, fork_port = free_port(), free_port()
    try:
        ok(daemon, "run", "debian-min", "-n", "deb-src", "-d", "-m", "512M",
           "--network", "restricted", "-p", f"{src_port}:7000")
        ok(daemon, "exec", "deb-src", "--", "systemd-run", "--unit=hello", "perl", "-e", HELLO)
        deadline = time.monotonic() + 30
        while True:  # the service needs a moment to listen
            try:
                assert hello(src_port) == "deb-src"
                break
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        source = identity(daemon, "deb-src")
        with daemon.client() as c:
            fork = c.fork("deb-src", "deb-fork", ports=[f"{fork_port}:7000"])
        # The fork's forward reaches the service it inherited, running as the fork; slirp
        # leases a new MAC a new address, so the fork keeps its source's, which the forward
        # points at.
        assert hello(fork_port) == "deb-fork"
        mine = identity(daemon, "deb-fork")
        assert mine["mac"] == fork["mac"] != source["mac"]
        assert mine["ipv4"] == source["ipv4"]
        assert mine["link_local"] == link_local(fork["mac"]) != source["link_local"]
        assert mine["machine_id"] != source["machine_id"]
        # journald writes under the new machine-id, where journalctl looks
        guest(daemon, "deb-fork", "logger from-the-fork")
        assert "from-the-fork" in guest(daemon, "deb-fork", "journalctl -b -q --no-pager -n 20")
        # the source is untouched and still answers as itself
        assert identity(daemon, "deb-src") == source
        assert hello(src_port) == "deb-src"
    finally:
        daemon.cli("rm", "-f", "deb-fork")
        daemon.cli("rm", "-f", "deb-src")


@as_root
def test_a_debian_vm_without_a_network_does_not_wait_for_one(
        daemon: Daemon, minimal: dict[str, Any]) -> None:
    try:
        ok(daemon, "run", "debian-min", "-n", "deb-none", "-d", "-m", "512M", "--network", "none")
        # What needs the network online (cloud-init, in the full image) goes on at once,
        # instead of after systemd-networkd-wait-online's 2-minute timeout.
        guest(daemon, "deb-none", "systemctl start network-online.target")
        assert guest(daemon, "deb-none", "systemctl is-failed systemd-networkd-wait-online; "
                                         "true") != "failed"
    finally:
        daemon.cli("rm", "-f", "deb-none")


def test_provisioning_input_is_checked_before_anything_is_built(daemon: Daemon,
                                                                tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("#cloud-config\nruncmd:\n  - echo one\n\t- echo two\n")
    not_config = tmp_path / "script.sh"
    not_config.write_text("#!/bin/sh\necho hi\n")
    private = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)],
                   check=True)
    garbage = tmp_path / "key.pub"
    garbage.write_text("ssh-ed25519 not-base64!\n")
    before = ok(daemon, "image", "ls", "--json")
    err = failed(daemon, "run", "debian", "--user-data", str(bad_yaml))
    assert str(bad_yaml) in err and "line 4" in err
    assert "#cloud-config" in failed(daemon, "run", "debian", "--user-data", str(not_config))
    assert f"{private}.pub" in failed(daemon, "run", "debian", "--ssh-key", str(private))
    assert "not an OpenSSH public key" in failed(daemon, "run", "debian", "--ssh-key",
                                                 str(garbage))
    assert "No such file" in failed(daemon, "run", "debian", "--ssh-key",
                                    str(tmp_path / "none.pub"))
    assert "1BAD" in failed(daemon, "run", "debian", "-e", "1BAD=x")
    # tiny has no cloud-init: say so rather than ignore the options
    assert "cloud-init" in failed(daemon, "run", "tiny", "-e", "A=b")
    assert ok(daemon, "image", "ls", "--json") == before  # nothing was built
    assert not any(v["name"].startswith("deb") for v in json.loads(ok(daemon, "ls", "--json")))


# --- the full image, on demand --------------------------------------------------------------


@pytest.fixture(scope="module")
def debian() -> Iterator[Daemon]:
    """A vmkitd whose home keeps the full debian image between local runs."""
    DEBIAN_HOME.mkdir(parents=True, exist_ok=True, mode=0o700)
    (DEBIAN_HOME / "cache").mkdir(exist_ok=True)
    if not (DEBIAN_HOME / "cache" / "debs").exists():
        (DEBIAN_HOME / "cache" / "debs").symlink_to(DEB_CACHE)
    d = Daemon(DEBIAN_HOME)
    d.start()
    try:
        with d.client() as c:
            for name in ("tiny", "debian"):
                if not any(i["name"] == name for i in c.list_images()):
                    c.wait_operation(c.build_image(name)["id"])
        yield d
    finally:
        for vm in json.loads(d.cli("ls", "--json").stdout or b"[]"):
            d.cli("rm", "-f", vm["name"])
        d.stop()
        kill_qemus(DEBIAN_HOME)


@as_root
@full
@pytest.mark.debian
def test_cloud_init_provisions_the_user_key_and_commands(debian: Daemon, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user_data = tmp_path / "cloud.yaml"
    user_data.write_text("#cloud-config\nruncmd:\n  - echo \"hello $GREETING\" > /root/greeting\n")
    start = time.monotonic()
    try:
        ok(debian, "run", "debian", "-n", "dev", "-d", "--cpus", "2", "-m", "1G",
           "--network", "restricted", "--ssh-key", f"{key}.pub", "--user-data", str(user_data),
           "-e", "GREETING=from vmkit", timeout=900)
        print(f"booted and provisioned in {time.monotonic() - start:.0f} s")
        # cloud-init is done when run returns: no waiting here
        assert guest(debian, "dev", "cloud-init status") == "status: done"
        assert guest(debian, "dev", "cat /root/greeting") == "hello from vmkit"
        # ssh on the forwarded port, as the user cloud-init made, with the given key
        out = ok(debian, "ssh", "dev", "-i", str(key), "--", "id -un; sudo -n cat /root/greeting")
        assert out.split("\n")[:2] == ["debian", "hello from vmkit"]
        # without -i, vmkit looks for the private half in ~/.ssh and its own key: not there
        assert "give one with -i" in failed(debian, "ssh", "dev", "--", "true")
        assert guest(debian, "dev", "systemctl is-system-running --wait; true") == "running"
        assert guest(debian, "dev", ". /etc/profile.d/vmkit-env.sh; echo $GREETING") == \
            "from vmkit"
        # the disk grows, and the root filesystem with it at the next boot (cloud-init)
        ok(debian, "stop", "dev")
        ok(debian, "resize", "dev", "--disk", "6G")
        ok(debian, "start", "dev", timeout=900)
        size = int(guest(debian, "dev", "df --output=size -B1M / | tail -1"))
        assert 5500 < size < 6200, size
        assert guest(debian, "dev", "cat /root/greeting") == "hello from vmkit"
    finally:
        debian.cli("rm", "-f", "dev")


@as_root
@full
@pytest.mark.debian
def test_a_failing_cloud_config_is_reported(debian: Daemon, tmp_path: Path) -> None:
    user_data = tmp_path / "cloud.yaml"
    user_data.write_text("#cloud-config\nruncmd:\n  - echo about to fail\n  - exit 3\n")
    try:
        result = debian.cli("run", "debian", "-n", "broken", "-d", "--cpus", "2", "-m", "1G",
                            "--network", "restricted", "--user-data", str(user_data),
                            timeout=900)
        err = result.stderr.decode()
        assert result.returncode == 1 and "cloud-init failed in broken" in err, err
        assert "Traceback" not in err
        # the VM stays up for the user to look into, with the default key (~/.ssh or vmkit's)
        assert json.loads(ok(debian, "inspect", "broken", "--json"))["state"] == "running"
        assert ok(debian, "ssh", "broken", "--", "hostname").strip() == "broken"
    finally:
        debian.cli("rm", "-f", "broken")


@as_root
@full
@pytest.mark.debian
def test_a_fork_of_a_debian_vm_answers_ssh_as_itself(debian: Daemon, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    try:
        ok(debian, "run", "debian", "-n", "src", "-d", "--cpus", "2", "-m", "1G",
           "--network", "restricted", "--ssh-key", f"{key}.pub", timeout=900)
        source_id = guest(debian, "src", "cat /etc/machine-id")
        with debian.client() as c:
            c.fork("src", "src2", ports=[f"{free_port()}:22"])
        # at once, through the fork's own forward
        out = ok(debian, "ssh", "src2", "-i", str(key), "--",
                 "hostname; cat /etc/machine-id; sudo -n journalctl -b -q -n1 | wc -l",
                 timeout=60).split()
        assert out[0] == "src2" and out[1] != source_id and out[2] == "1", out
        # cloud-init's /etc/hosts names the fork, not its source
        assert guest(debian, "src2", "grep 127.0.1.1 /etc/hosts").split() == \
            ["127.0.1.1", "src2", "src2"]
        assert ok(debian, "ssh", "src", "-i", str(key), "--", "hostname").strip() == "src"
    finally:
        debian.cli("rm", "-f", "src2")
        debian.cli("rm", "-f", "src")


@as_root
@full
@pytest.mark.debian
def test_a_debian_vm_without_a_network_is_provisioned_without_waiting_for_one(
        debian: Daemon) -> None:
    start = time.monotonic()
    try:
        ok(debian, "run", "debian", "-n", "offline", "-d", "--cpus", "2", "-m", "1G",
           "--network", "none", timeout=900)
        print(f"booted and provisioned in {time.monotonic() - start:.0f} s")
        assert guest(debian, "offline", "cloud-init status") == "status: done"
        # cloud-init waited for network-online.target, which no longer waits for wait-online
        assert guest(debian, "offline", "systemctl is-failed systemd-networkd-wait-online; "
                                        "true") != "failed"
    finally:
        debian.cli("rm", "-f", "offline")

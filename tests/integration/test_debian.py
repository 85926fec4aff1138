"""The debian image: built with debootstrap, booted on a q35 PC with its own kernel, and
provisioned by the real cloud-init in the guest.

Every CI run builds the minimal variant (systemd, kernel, guest agent: no ssh, no cloud-init)
and boots it. The full image takes minutes to build and each boot with cloud-init about
100 s under TCG, so those tests carry the 'debian' marker and run when VMKIT_TEST_DEBIAN=1
(the image is kept in ~/.cache/vmkit-tests/debian-home between local runs):

    VMKIT_TEST_DEBIAN=1 python -m pytest tests/integration/test_debian.py -v
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEB_CACHE, Daemon, kill_qemus

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


# --- every run --------------------------------------------------------------------------


@as_root
def test_the_minimal_image_builds_into_the_store_and_boots_to_systemd(daemon: Daemon) -> None:
    ok(daemon, "image", "build", "debian", "--minimal", "--name", "debian-min", "--size", "2G",
       timeout=900)
    image = json.loads(ok(daemon, "image", "inspect", "debian-min", "--json"))
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
    ok(daemon, "image", "rm", "debian-min")


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

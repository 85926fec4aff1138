"""Files in VM directories, which a jailed QEMU's user owns (no writing through its
symlinks), and the options of the jail QEMU starts in."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmkit.paths import atomic_write, open_nofollow


def test_a_symlink_in_place_of_a_log_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep\n")
    (tmp_path / "qemu.log").symlink_to(secret)
    with pytest.raises(OSError):
        open_nofollow(tmp_path / "qemu.log", append=True)
    with pytest.raises(OSError):
        open_nofollow(tmp_path / "qemu.log")
    assert secret.read_text() == "keep\n"


def test_atomic_write_replaces_a_planted_temporary_symlink(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep\n")
    (tmp_path / ".launched.json.tmp").symlink_to(secret)
    atomic_write(tmp_path / "launched.json", b"{}")
    assert secret.read_text() == "keep\n"
    assert (tmp_path / "launched.json").read_bytes() == b"{}"


def test_the_jailer_reads_its_options_in_order() -> None:
    from vmkit.machine import jailer

    spec, qemu = jailer.parse(["--root", "/r", "--uid", "5", "--gid", "6", "--groups", "7",
                               "--dev", "net/tun", "--rw", "/vm", "--ro", "/disk", "--",
                               "qemu", "--", "-S"])
    assert (spec["root"], spec["uid"], spec["gid"], spec["groups"]) == ("/r", 5, 6, [7])
    assert spec["dev"] == ["net/tun"] and spec["binds"] == [("/vm", True), ("/disk", False)]
    assert qemu == ["qemu", "--", "-S"]


def test_the_jail_gets_the_devices_the_command_line_needs() -> None:
    from vmkit.machine.jail import devices

    base = ["qemu", "-accel", "tcg", "-netdev", "user,id=net0"]
    assert devices(base) == ([], [])
    assert devices([*base, "-netdev", "tap,id=net1,ifname=vkt1"]) == (["net/tun"], [])


def test_a_qemu_outside_usr_is_brought_into_the_jail(tmp_path: Path) -> None:
    from vmkit.machine.jail import program_files

    assert program_files(["/usr/bin/qemu-system-x86_64", "-m", "256M"]) == []
    binary = tmp_path / "qemu-10.0" / "usr" / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir(parents=True)
    binary.touch()
    assert program_files([str(binary), "-L", "x"]) == [(tmp_path / "qemu-10.0" / "usr", False)]

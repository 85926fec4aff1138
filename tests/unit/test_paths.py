"""Files in VM directories, which a jailed QEMU's user owns: no writing through its symlinks."""

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

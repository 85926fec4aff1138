"""core/launch.py: a VM whose QEMU sockets would have paths too long for Unix sockets is
refused with a message that says what to shorten, before QEMU runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmkit.core.launch import MAX_SOCKET_PATH, _check_socket_paths
from vmkit.errors import InvalidInputError
from vmkit.paths import HomePaths


def test_a_short_home_passes() -> None:
    home = Path("/var/lib/vmkit")
    _check_socket_paths(HomePaths(home).vm("a" * 63), home)


def test_a_long_home_is_refused_with_what_to_shorten() -> None:
    home = Path("/tmp/" + "h" * 60)
    vmp = HomePaths(home).vm("web-" + "x" * 40)
    assert max(len(bytes(p)) for p in (vmp.qmp, vmp.agent, vmp.console)) > MAX_SOCKET_PATH
    with pytest.raises(InvalidInputError, match="shorter VMKIT_HOME") as e:
        _check_socket_paths(vmp, home)
    assert str(home) in e.value.message

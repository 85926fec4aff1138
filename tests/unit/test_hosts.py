"""hosts.py: the registry of other vmkit hosts, on a fresh VMKIT_HOME per test."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from vmkit import hosts
from vmkit.errors import InvalidInputError, NotFoundError
from vmkit.paths import HomePaths


@pytest.fixture
def paths(tmp_path: Path) -> HomePaths:
    return HomePaths(tmp_path / "home")


def test_add_get_remove(paths: HomePaths, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    hosts.add(paths, hosts.peer("lab", "https://10.0.0.5:8765/", " tok ", ca))
    hosts.add(paths, hosts.peer("edge", "http://[::1]:9000", "t2"))
    assert hosts.get(paths, "lab") == hosts.Peer("lab", "https://10.0.0.5:8765", "tok", str(ca))
    assert sorted(hosts.load(paths)) == ["edge", "lab"]
    assert stat.S_IMODE(paths.hosts.stat().st_mode) == 0o600  # it holds tokens
    hosts.add(paths, hosts.peer("lab", "http://10.0.0.6:1", "new"))  # replaces
    assert hosts.get(paths, "lab").url == "http://10.0.0.6:1"
    hosts.remove(paths, "lab")
    assert list(hosts.load(paths)) == ["edge"]
    with pytest.raises(NotFoundError, match="no host named 'lab'"):
        hosts.get(paths, "lab")
    with pytest.raises(NotFoundError):
        hosts.remove(paths, "lab")


@pytest.mark.parametrize("url", [
    "10.0.0.5:8765", "ftp://10.0.0.5:21", "http://10.0.0.5", "http://:8765",
    "http://10.0.0.5:99999", "http://10.0.0.5:8765/v1", "https://host:port",
])
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidInputError, match="use http"):
        hosts.peer("lab", url, "tok")


def test_bad_names_tokens_and_ca(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        hosts.peer("bad name", "http://10.0.0.5:1", "tok")
    with pytest.raises(InvalidInputError, match="--token"):
        hosts.peer("lab", "http://10.0.0.5:1", "  ")
    with pytest.raises(InvalidInputError, match="does not exist"):
        hosts.peer("lab", "https://10.0.0.5:1", "tok", tmp_path / "missing.pem")

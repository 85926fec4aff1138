"""The cluster's pure parts: etcd URLs and request bodies, error lines, host states, the
demo cluster's layout and vmkitd's --cluster checks."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from vmkit.cluster import demo
from vmkit.cluster.etcd import Compare, Tls, _failure, check_endpoints, prefix_end, put_op
from vmkit.cluster.membership import check_config
from vmkit.cluster.view import host_state
from vmkit.errors import InvalidInputError


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_endpoints_are_checked() -> None:
    assert check_endpoints(" http://10.0.0.5:2379/, https://e2:2379") == [
        "http://10.0.0.5:2379", "https://e2:2379"]
    for bad in ("", "10.0.0.5:2379", "http://e1", "ftp://e1:2379", "http://e1:99999"):
        with pytest.raises(InvalidInputError, match="etcd URL"):
            check_endpoints(bad)


def test_a_prefix_covers_its_keys_and_no_others() -> None:
    assert prefix_end("/vmkit/") == b64("/vmkit0")
    assert Compare("/k", "CREATE", 0).body() == {"key": b64("/k"), "target": "CREATE",
                                                 "result": "EQUAL", "create_revision": "0"}
    assert Compare("/k", "VALUE", "v", "NOT_EQUAL").body()["value"] == b64("v")
    assert put_op("/k", "v", 7) == {"request_put": {"key": b64("/k"), "value": b64("v"),
                                                    "lease": "7"}}


def test_the_failure_says_which_trouble_it_is() -> None:
    assert "cannot reach etcd at http://a:1, http://b:1" in _failure(
        ["http://a:1", "http://b:1"], []).message
    assert "lost quorum" in _failure(["http://a:1"], ["http://b:1"]).message


def test_a_host_without_its_lease_is_down_whatever_it_was_marked() -> None:
    assert host_state(True, None) == "ready"
    assert host_state(True, "cordoned") == "cordoned"
    assert host_state(True, "draining") == "draining"
    assert host_state(False, "cordoned") == "down"


def test_vmkitd_cluster_options_are_checked() -> None:
    config = check_config(["http://e:2379"], "h1", "10.0.0.5:8765", True, Tls())
    assert config.api_url == "https://10.0.0.5:8765"
    assert check_config(["http://e:2379"], "h1", "[fd00::5]:8765", False,
                        Tls()).api_url == "http://[fd00::5]:8765"
    with pytest.raises(InvalidInputError, match="needs --listen"):
        check_config(["http://e:2379"], "h1", None, False, Tls())
    with pytest.raises(InvalidInputError, match="not a wildcard"):
        check_config(["http://e:2379"], "h1", "0.0.0.0:8765", False, Tls())
    with pytest.raises(InvalidInputError):
        check_config(["http://e:2379"], "bad name", "10.0.0.5:8765", False, Tls())
    with pytest.raises(InvalidInputError, match="--cluster-ca /nonexistent.pem: no readable"):
        check_config(["http://e:2379"], "h1", "10.0.0.5:8765", True, Tls(), None,
                     "/nonexistent.pem")


def test_the_demo_layout_names_everything_after_the_cluster(tmp_path: Path) -> None:
    lay = demo.layout("demo", 3, "10.77.0.0/24", tmp_path)
    assert (lay.bridge, lay.netns(2), lay.veth(2)) == ("vkdemobr", "vkdemo-h2", "vkdemoh2")
    assert all(len(n) <= 15 for n in (lay.bridge, lay.veth(3)))
    assert (lay.address(0), lay.address(3)) == ("10.77.0.1", "10.77.0.13")
    assert lay.etcd_urls()[0] == "http://10.77.0.11:2379"
    assert lay.api_url(2) == "http://10.77.0.12:8765"
    for name, hosts, subnet in (("too-long-1", 3, "10.77.0.0/24"), ("a b", 3, "10.77.0.0/24"),
                                ("demo", 0, "10.77.0.0/24"), ("demo", 10, "10.77.0.0/24"),
                                ("demo", 3, "10.77.0.0/16"), ("demo", 3, "fd00::/120"),
                                ("demo", 3, "nonsense")):
        with pytest.raises(InvalidInputError):
            demo.layout(name, hosts, subnet, tmp_path)

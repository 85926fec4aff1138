"""The dashboard's cluster page in Chromium, on a real two-host demo cluster (an etcd member and
a vmkitd in each of two network namespaces, made with the code of 'vmkit cluster up'; no
guests): both hosts shown ready with their capacity, then cordoned and uncordoned from the
page, as the cluster itself records it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmkit
from vmkit.cluster import demo

from ..conftest import demo_cluster
from .test_dashboard import (browser, click, errors_in_console, log_in,  # noqa: F401 (fixtures)
                             screenshot, shots, wait_for)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="apt-get install etcd-server"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[demo.Layout]:
    with demo_cluster("d", 2) as lay:
        yield lay


def host_states(lay: demo.Layout) -> dict[str, str]:
    with vmkit.Client(url=lay.api_url(1), token=demo.token(lay)) as c:
        return {h.name: h.state for h in c.cluster_hosts()}


def test_the_cluster_page_shows_the_hosts_and_cordons_one(cluster: demo.Layout, browser: Any,
                                                          shots: Path) -> None:
    base = f"{cluster.api_url(1)}/ui/"
    log_in(browser, base, demo.token(cluster))
    wait_for(browser, "#nav:not([hidden])", "the logged-in page")
    browser.get(f"{base}#/cluster")
    for name in ("h1", "h2"):
        wait_for(browser, f".cluster-hosts tr[data-key='{name}'] [data-state='ready']",
                 f"{name} shown ready")
    wait_for(browser, "#memory-h2", "h2's memory bar")
    screenshot(browser, shots, "dashboard-cluster-hosts.png")

    click(browser, "button[aria-label='Cordon h2']", "Cordon h2")
    wait_for(browser, ".cluster-hosts tr[data-key='h2'] [data-state='cordoned']", "h2 cordoned")
    assert host_states(cluster) == {"h1": "ready", "h2": "cordoned"}

    click(browser, "button[aria-label='Uncordon h2']", "Uncordon h2")
    wait_for(browser, ".cluster-hosts tr[data-key='h2'] [data-state='ready']", "h2 ready again")
    assert host_states(cluster) == {"h1": "ready", "h2": "ready"}
    assert errors_in_console(browser) == []

"""A cluster of real vmkitd on real etcd, in network namespaces made here with the same code as
'vmkit cluster up' (vmkit.cluster.demo): membership under a lease (join, kill -9, rejoin),
the etcd client, quorum loss, and bad input. No guests: membership needs none.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmkit
from vmkit.cluster import demo, index, keys
from vmkit.cluster.etcd import Compare, Etcd, put_op
from vmkit.cluster.membership import TTL

from ..conftest import demo_cluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="apt-get install etcd-server"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[demo.Layout]:
    with demo_cluster("t", 3) as lay:
        yield lay


def member(lay: demo.Layout, i: int) -> vmkit.Client:
    return vmkit.Client(url=lay.api_url(i), token=demo.token(lay))


def states(lay: demo.Layout, via: int = 1) -> dict[str, str]:
    with member(lay, via) as c:
        return {h.name: h.state for h in c.cluster_hosts()}


def wait_for(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def test_every_member_sees_every_host_with_its_facts(cluster: demo.Layout) -> None:
    for via in cluster.numbers():
        with member(cluster, via) as c:
            found = {h.name: h for h in c.cluster_hosts()}
        assert set(found) == {"h1", "h2", "h3"}
        h2 = found["h2"]
        assert (h2.state, h2.url) == ("ready", cluster.api_url(2))
        assert h2.cpus and h2.cpus >= 1 and h2.memory_mib and h2.memory_mib > 0
        assert h2.disk_free_bytes and h2.qemu_version and h2.vms == []


def test_one_token_for_the_cluster_and_none_refused(cluster: demo.Layout) -> None:
    tokens = {(cluster.home(i) / "run" / "token").read_text() for i in cluster.numbers()}
    assert len(tokens) == 1
    with vmkit.Client(url=cluster.api_url(3), token="wrong") as c, \
            pytest.raises(vmkit.UnauthorizedError):
        c.cluster_hosts()


def test_a_killed_host_shows_down_within_two_ttls_and_rejoins(cluster: demo.Layout) -> None:
    os.kill(demo.pid(cluster, 2, "vmkitd"), signal.SIGKILL)
    assert wait_for(lambda: states(cluster)["h2"] == "down", 2 * TTL), states(cluster)
    assert states(cluster, via=3) == {"h1": "ready", "h2": "down", "h3": "ready"}
    demo.spawn(cluster, 2, "vmkitd")
    demo.wait_ready(cluster)
    assert states(cluster) == {"h1": "ready", "h2": "ready", "h3": "ready"}


def test_the_etcd_client_against_a_real_cluster(cluster: demo.Layout) -> None:
    async def run() -> None:
        etcd = Etcd(["http://127.0.0.1:9", *cluster.etcd_urls()])  # the first answers nothing
        try:
            await etcd.put("/test/a", "1")
            assert await etcd.get("/test/a") == b"1" and await etcd.get("/test/none") is None
            assert await etcd.put_if_absent("/test/a", "2") is False
            assert await etcd.txn([Compare("/test/a", "VALUE", "1")], [put_op("/test/a", "3")])
            assert await etcd.range("/test/") == {"/test/a": b"3"}
            lease = await etcd.grant(5)
            await etcd.put("/test/leased", "x", lease)
            assert await etcd.keepalive(lease) == 5
            changes = etcd.watch("/test/")
            seen = asyncio.create_task(anext(changes))
            await asyncio.sleep(0.3)
            await etcd.revoke(lease)  # deletes the leased key: the watch sees it
            assert (await asyncio.wait_for(seen, 5))[:2] == ("DELETE", "/test/leased")
            await changes.aclose()
            assert await etcd.delete("/test/", prefix=True) == 1
            assert (await etcd.get(keys.TOKEN) or b"").decode().strip() == demo.token(cluster)
        finally:
            await etcd.close()

    asyncio.run(run())


def test_a_reservation_whose_vm_never_came_is_given_back(cluster: demo.Layout) -> None:
    """A run that failed after its placement, by a client that did not give it back: the
    host it was placed on drops it once it is HOLD seconds old (not before). On a host
    that is not a member ("hx"), so that no member's own sweep runs meanwhile."""
    async def run() -> None:
        etcd = Etcd(cluster.etcd_urls())
        try:
            _, revision = await index.entries(etcd)
            old = index.Entry("hx", 1, 256, "tiny", placed=time.time() - index.HOLD - 1)
            assert await index.reserve(etcd, "lost", old, revision)
            _, revision = await index.entries(etcd)
            assert await index.reserve(etcd, "coming", index.Entry(
                "hx", 1, 256, "tiny", placed=time.time()), revision)
            assert await index.Keeper(etcd, "hy").sweep([]) == []  # not hy's
            assert await index.Keeper(etcd, "hx").sweep(["other"]) == ["lost"]
            assert set((await index.entries(etcd))[0]) == {"coming"}
            await index.release(etcd, "coming", "hx")
        finally:
            await etcd.close()

    asyncio.run(run())


def test_without_quorum_cluster_calls_fail_in_one_line_and_the_host_keeps_working(
        cluster: demo.Layout) -> None:
    for i in (2, 3):
        os.kill(demo.pid(cluster, i, "etcd"), signal.SIGTERM)
    try:
        # The leader steps down once it misses its followers for an election timeout (~1 s)
        assert wait_for(lambda: not _answers(cluster), 10)
        with member(cluster, 1) as c:
            with pytest.raises(vmkit.VmkitError) as e:
                c.cluster_hosts()
            assert "etcd has lost quorum" in e.value.message and "\n" not in e.value.message
            assert c.info().pid  # the host's own API still answers
            assert c.list_vms() == []
    finally:
        for i in (2, 3):
            demo.spawn(cluster, i, "etcd")
    assert wait_for(lambda: _answers(cluster), 30)
    assert wait_for(lambda: set(states(cluster).values()) == {"ready"}, 2 * TTL)


def _answers(lay: demo.Layout) -> bool:
    try:
        states(lay)
        return True
    except vmkit.VmkitError:
        return False


def test_bad_input_gives_one_line_and_changes_nothing(cluster: demo.Layout,
                                                      tmp_path: Path) -> None:
    def vmkitd(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "vmkit.daemon", "--home",
                                 str(tmp_path / "home"), *args], capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        return lines[0]

    assert "cannot join the cluster: cannot reach etcd at http://127.0.0.1:9" in vmkitd(
        "--cluster", "http://127.0.0.1:9", "--listen", "127.0.0.1:0")
    assert "needs --listen" in vmkitd("--cluster", cluster.etcd_urls()[0])
    assert "etcd URL" in vmkitd("--cluster", "10.0.0.1:2379", "--listen", "127.0.0.1:0")
    # h1 is up: its name is taken; the cluster's list does not change
    before = states(cluster)
    with open(cluster.home(1) / "run" / "token") as f:
        token = f.read()
    line = vmkitd("--cluster", cluster.etcd_urls()[0], "--listen", f"{cluster.address(0)}:0",
                  "--host-name", "h1")
    assert "'h1' is taken" in line
    assert states(cluster) == before
    assert (cluster.home(1) / "run" / "token").read_text() == token
    with pytest.raises(vmkit.ConflictError, match="is up"):
        demo.up(cluster)


def test_down_removes_every_trace(tmp_path: Path) -> None:
    lay = demo.layout(f"d{os.getpid() % 100000}", 1, "10.199.1.0/24", tmp_path)
    demo.up(lay)
    pids = [demo.pid(lay, 1, what) for what in ("etcd", "vmkitd")]
    demo.down(lay)
    assert not Path(lay.dir).exists()
    assert lay.netns(1) not in subprocess.run(["ip", "netns"], capture_output=True,
                                              text=True, check=False).stdout
    for link in (lay.bridge, lay.veth(1)):
        assert subprocess.run(["ip", "link", "show", link], capture_output=True,
                              check=False).returncode
    assert f"vmkit:cluster:{lay.name}" not in subprocess.run(
        ["iptables", "-S", "FORWARD"], capture_output=True, text=True, check=False).stdout
    for p in pids:
        assert not Path(f"/proc/{p}").exists() or \
            Path(f"/proc/{p}/stat").read_text().split()[2] == "Z"

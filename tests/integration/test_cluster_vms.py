"""The cluster with guests: placement (cordon, --spread refused, 20 concurrent runs that
never overbook, images shipped by placement), one view (ls with HOST, exec/cp/console
through any member), drain by live migration with counters that keep counting (image
shipped by migration; a VM that cannot move stays), and etcd without quorum with guests
running. Three hosts in network namespaces, each offering 512 MiB: two tiny guests each.
Only h1 starts with an image. The tests run in order, on one cluster.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import vmkit
from vmkit import hosts as peers
from vmkit.client.routing import ClusterClient
from vmkit.cluster import demo, index
from vmkit.cluster.etcd import Etcd
from vmkit.paths import HomePaths

from ..conftest import Daemon, clone_home, demo_cluster
from .test_snapshots import COUNTER, count

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("etcd") is None, reason="apt-get install etcd-server"),
]


@pytest.fixture(scope="module")
def cluster(daemon: Daemon) -> Iterator[tuple[demo.Layout, Path]]:
    """The cluster, and a vmkit home (for the CLI) where its hosts are registered."""
    with demo_cluster("v", 3, 512, lambda home: clone_home(daemon.home, home)) as lay:
        cli_home = Path(lay.dir).parent / "cli"
        for i in lay.numbers():
            peers.add(HomePaths(cli_home),
                      peers.peer(lay.host(i), lay.api_url(i), demo.token(lay)))
        yield lay, cli_home


def auth(lay: demo.Layout) -> dict[str, str]:
    return {"authorization": f"Bearer {demo.token(lay)}"}


def via(lay: demo.Layout, i: int) -> ClusterClient:
    return ClusterClient(url=lay.api_url(i), token=demo.token(lay))


def host(lay: demo.Layout, i: int) -> vmkit.Client:
    return vmkit.Client(url=lay.api_url(i), token=demo.token(lay))


def cli(cli_home: Path, *args: str, ok: bool = True, progress: bool = False
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "vmkit.cli.main", *args], text=True,
                            env=dict(os.environ, VMKIT_HOME=str(cli_home)),
                            capture_output=True, timeout=300, check=False)
    assert (result.returncode == 0) == ok, result
    if not ok:  # one line (after the progress lines of a drain)
        assert progress or len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    return result


def where(lay: demo.Layout) -> dict[str, str]:
    with via(lay, 1) as c:
        return {vm.name: vm.host for vm in c.list_vms()}


def reserved(lay: demo.Layout) -> dict[str, str]:
    """The cluster's index: VM name -> host, reservations included."""
    async def read() -> dict[str, str]:
        etcd = Etcd(lay.etcd_urls())
        try:
            return {name: e.host for name, e in (await index.entries(etcd))[0].items()}
        finally:
            await etcd.close()

    return asyncio.run(read())


def until(check: Callable[[], bool], what: str | Callable[[], str], timeout: float = 120.0
          ) -> None:
    """Wait for ``check`` (a state the cluster reaches in its own time, not a deadline under
    test: the timeout only ends a test that would hang). ``what`` may say what is there."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not {what if isinstance(what, str) else what()}"
        time.sleep(0.3)


def console_echo(c: vmkit.Client, vm: str) -> None:
    """The guest's serial console answers through ``c``."""
    with c.console(vm) as ws:
        ws.send_bytes(b"\necho con$((6*7))sole\n")
        seen = b""
        while b"con42sole" not in seen:
            seen += ws.receive_bytes(timeout=60)


def test_cordon_and_unspreadable_groups_are_refused_in_one_line(cluster) -> None:
    lay, home = cluster
    cli(home, "--cluster", "h1", "host", "cordon", "h3")
    with via(lay, 2) as c:
        assert {h.name: h.state for h in c.cluster_hosts()}["h3"] == "cordoned"
    with via(lay, 1) as c:  # placements only (reserved, no guest): two hosts take VMs
        spread = {c.place(f"sp{n}", group="g", policy="spread").host for n in range(2)}
        assert spread == {"h1", "h2"}
        r = cli(home, "--cluster", "h2", "run", "-d", "-n", "sp2", "--group", "g", "--spread",
                ok=False)
        assert "h1: has a VM of group g (--spread)" in r.stderr and "h3: cordoned" in r.stderr
        for n, name in enumerate(sorted(spread)):
            c.unplace(f"sp{n}", name)
    r = cli(home, "--cluster", "h1", "host", "cordon", "nohost", ok=False)
    assert "no host named nohost" in r.stderr
    r = cli(home, "--cluster", "h1", "run", "-d", "--host", "nohost", ok=False)
    assert "no host named nohost" in r.stderr
    assert where(lay) == {}


def test_a_run_that_fails_after_placement_gives_its_reservation_back(cluster) -> None:
    lay, _ = cluster
    with via(lay, 1) as c:
        with pytest.raises(vmkit.InvalidInputError):  # refused by the host placed on
            c.run(name="bad", memory="256M", ports=["no-such-port"])
        op = c.start_run(name="gone", memory="256M", host="h1")
        # cancelled through a member that does not know the operation: it asks the others
        r = httpx.delete(f"{lay.api_url(2)}/v1/operations/{op.id}", headers=auth(lay),
                         trust_env=False, timeout=60)
        assert r.status_code == 202, r.text
        with pytest.raises(vmkit.VmkitError, match="cancel"):
            c.wait_operation(op.id)
    assert where(lay) == {} and reserved(lay) == {}


def test_twenty_concurrent_runs_never_overbook(cluster) -> None:
    lay, _ = cluster

    def run(n: int) -> str:
        with via(lay, 1 + n % 3) as c:
            try:
                c.run(name=f"c{n}", memory="256M")
                return c.placement.host
            except vmkit.ConflictError as e:
                assert "no host can take this VM" in e.message
                return "refused"

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(run, range(20)))
    # h3 is cordoned; h1 and h2 offer 512 MiB each: two 256 MiB guests each, no more
    assert sorted(results) == ["h1", "h1", "h2", "h2"] + ["refused"] * 16
    with via(lay, 3) as c:
        facts = {h.name: h for h in c.cluster_hosts()}
        placed = {vm.name: vm for vm in c.list_vms()}
    assert len(placed) == 4 and all(vm.state == "running" for vm in placed.values())
    for name in ("h1", "h2"):
        assert sum(vm.memory_mib for vm in placed.values() if vm.host == name) == 512
        assert facts[name].memory_used_mib == 512
    assert "tiny" in dict(facts["h2"].images)  # shipped by placement
    assert dict(facts["h3"].images) == {}


def test_one_view_and_routing_through_any_member(cluster, tmp_path: Path) -> None:
    lay, home = cluster
    on = where(lay)
    vm = next(name for name, h in on.items() if h == "h2")
    listing = cli(home, "--cluster", "h3", "ls").stdout.splitlines()
    assert listing[0].split()[:2] == ["NAME", "HOST"]
    assert {tuple(line.split()[:2]) for line in listing[1:]} == set(on.items())
    r = cli(home, "--cluster", "h3", "exec", vm, "--", "cat", "/etc/hostname")
    assert r.stdout.strip() == vm
    (tmp_path / "f").write_text("through h1\n")
    cli(home, "--cluster", "h1", "cp", str(tmp_path / "f"), f"{vm}:/tmp/f")
    with host(lay, 2) as c:
        assert c.exec(vm, ["cat", "/tmp/f"]).stdout == b"through h1\n"
    with via(lay, 3) as c:
        console_echo(c, vm)


def test_any_member_answers_for_the_whole_cluster_over_raw_http(cluster) -> None:
    """h3 has no VM: it passes each VM's requests on to the VM's host, streamed both ways,
    websockets too; its own list is its own, ?cluster=1 is the cluster's."""
    lay, _ = cluster
    on = where(lay)
    vm = next(name for name, h in on.items() if h == "h2")
    with httpx.Client(base_url=lay.api_url(3) + "/v1", headers=auth(lay), trust_env=False,
                      timeout=120) as http:
        assert http.get(f"/vms/{vm}").json()["name"] == vm
        assert http.get("/vms").json() == []
        assert {v["name"]: v["host"] for v in http.get("/vms?cluster=1").json()} == on
        events = [json.loads(line) for line in
                  http.post(f"/vms/{vm}/exec", json={"argv": ["hostname"]}).text.splitlines()]
        assert b"".join(base64.b64decode(e["stdout"]) for e in events if "stdout" in e) \
            == f"{vm}\n".encode() and events[-1] == {"exit_code": 0}
        data = os.urandom(2 << 20)
        put = http.put(f"/vms/{vm}/files", params={"path": "/tmp/big"},
                       content=iter([data[:1 << 20], data[1 << 20:]]))
        assert put.json() == {"bytes": len(data)}
        assert http.get(f"/vms/{vm}/files", params={"path": "/tmp/big"}).content == data
        assert http.get("/vms/nosuchvm").status_code == 404
        # the loop guard: a request passed on once is answered where it arrives
        assert http.get(f"/vms/{vm}", headers={"x-vmkit-forwarded": "h1"}).status_code == 404
    assert httpx.get(f"{lay.api_url(3)}/v1/vms/{vm}", trust_env=False).status_code == 401
    with host(lay, 3) as c:  # a plain client of h3: the websocket is relayed to h2
        console_echo(c, vm)


def test_drain_moves_running_vms_and_their_counters_keep_counting(cluster) -> None:
    lay, home = cluster
    cli(home, "--cluster", "h1", "host", "uncordon", "h3")
    leaving = sorted(name for name, h in where(lay).items() if h == "h1")
    with host(lay, 1) as c:
        for vm in leaving:
            c.exec(vm, ["sh", "-c", COUNTER])
        before = {vm: count(c, vm) for vm in leaving}
    r = cli(home, "--cluster", "h2", "host", "drain", "h1")
    assert "h1: drained" in r.stdout and "now on h3" in r.stderr
    assert {vm: h for vm, h in where(lay).items() if vm in leaving} == \
        {vm: "h3" for vm in leaving}
    with host(lay, 3) as c:  # a host with no images got one by migration
        for vm in leaving:
            first = count(c, vm)
            assert first >= before[vm]
            until(lambda vm=vm, first=first: count(c, vm) > first, f"counting on in {vm}")
    with host(lay, 1) as c:
        assert c.list_vms() == []
    # h3 and h2 are full and h1 drains: h3's VMs cannot move, and say so
    r = cli(home, "--cluster", "h1", "host", "drain", "h3", ok=False, progress=True)
    last = r.stderr.strip().splitlines()[-1]
    assert "h3: 2 VM(s) left" in last and "no host can take this VM" in last
    with host(lay, 3) as c:
        assert {vm.state for vm in c.list_vms()} == {"running"}
    r = cli(home, "--cluster", "h1", "host", "drain", "h2", ok=False)
    assert "last ready host" in r.stderr


def test_without_quorum_guests_run_and_cluster_calls_fail_in_one_line(cluster) -> None:
    lay, home = cluster
    on = where(lay)
    cli(home, "--cluster", "h1", "host", "uncordon", "h1")
    for i in (2, 3):
        os.kill(demo.pid(lay, i, "etcd"), signal.SIGTERM)
    try:
        until(lambda: not answers(lay), "without quorum")  # the leader steps down
        r = cli(home, "--cluster", "h1", "run", "-d", "-n", "q1", ok=False)
        assert "etcd has lost quorum" in r.stderr
        for vm, name in on.items():
            with host(lay, int(name[1])) as c:
                assert c.exec(vm, ["true"]).exit_code == 0
    finally:
        for i in (2, 3):
            demo.spawn(lay, i, "etcd")
    until(lambda: answers(lay), "with a leader again")
    cli(home, "--cluster", "h1", "run", "-d", "-n", "q1", "--host", "h1")
    assert where(lay)["q1"] == "h1"


def answers(lay: demo.Layout) -> bool:
    try:
        where(lay)
        return True
    except vmkit.VmkitError:
        return False


def test_six_vms_over_three_hosts_then_a_cold_drain_keeps_their_group(cluster) -> None:
    """Real guests of 128 MiB placed by the scheduler's weights and group rules; then the
    stopped ones of h1 move cold (disk and spec), their --pack group kept together."""
    lay, home = cluster
    for i in lay.numbers():  # host by host: whatever the earlier tests left, index or not
        with host(lay, i) as h:
            for vm in h.list_vms():
                h.remove_vm(vm.name, force=True)
    with via(lay, 1) as c:
        for name in ("h1", "h3"):  # h1 was drained, h3's drain left its VMs
            c.mark_host(name, "ready")
        until(lambda: not reserved(lay) and all(h.memory_used_mib == 0
                                                for h in c.cluster_hosts()),
              lambda: f"empty: index {reserved(lay)}, memory used "
                      f"{ {h.name: h.memory_used_mib for h in c.cluster_hosts()} }")
        for name, group, policy in (("db1", "db", "pack"), ("db2", "db", "pack"),
                                    ("web1", "web", "spread"), ("web2", "web", "spread"),
                                    ("x1", None, None), ("x2", None, None)):
            c.run(name=name, memory="128M", group=group, policy=policy)
        placed = where(lay)
        assert placed == {"db1": "h1", "db2": "h1", "web1": "h2", "web2": "h3",
                          "x1": "h2", "x2": "h3"}
        for name in placed:  # each a real guest, on that host
            assert c.exec(name, ["hostname"]).stdout.decode().strip() == name
        for i in lay.numbers():
            with host(lay, i) as h:
                assert {vm.name for vm in h.list_vms()} == \
                    {vm for vm, on in placed.items() if on == f"h{i}"}
        c.exec("db1", ["sh", "-c", "echo kept > /root/marker && sync"])
        for name in ("db1", "db2"):
            c.stop_vm(name)
    r = cli(home, "--cluster", "h3", "host", "drain", "h1")
    assert "db1: h1 -> h2 (cold: it is stopped)" in r.stderr
    # least used would be h3 for db2 (2 VMs there, 3 on h2): --pack keeps it with db1
    assert {k: v for k, v in where(lay).items() if k.startswith("db")} == \
        {"db1": "h2", "db2": "h2"}
    with host(lay, 1) as c:  # h1 is empty, and answers for db1 on h2
        assert c.list_vms() == []
        assert c.get_vm("db2").state == "stopped"
        c.start_vm("db1")
        assert c.exec("db1", ["cat", "/root/marker"]).stdout == b"kept\n"

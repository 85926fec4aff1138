"""The cluster against a single host, in one run, on a demo cluster of 3 hosts made here
(root; the tiny image is taken from VMKIT_HOME, which must have it):

placement  `run` through the cluster (placement, reservation in etcd, the run on the chosen
           host: call to VM running) against a `run` on one host's own API, N times each
           (goal: within 1.1x)
drain      draining a host of N running VMs against N sequential `migrate` calls of the
           same VMs (to it, before)
etcd       requests per placement: etcd's own gRPC counters, before and after N placements

    sudo python bench/cluster.py [--runs 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import vmkit
from vmkit.client.routing import ClusterClient
from vmkit.cluster import demo
from vmkit.paths import default_home

from common import clone_home


def seed(home: Path) -> None:
    clone_home(Path(os.environ.get("VMKIT_HOME") or default_home()), home)


def etcd_requests(lay: demo.Layout) -> int:
    total = 0
    for url in lay.etcd_urls():
        for line in urllib.request.urlopen(url + "/metrics", timeout=5).read().decode().splitlines():
            if line.startswith("grpc_server_handled_total"):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def timed(action) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4)
    n = parser.parse_args().runs
    base = Path(tempfile.mkdtemp(prefix="vmkit-bench-cluster-"))
    lay = demo.layout("bench", 3, "10.78.0.0/24", base)
    demo.up(lay, seed)
    token = demo.token(lay)
    try:
        with ClusterClient(url=lay.api_url(1), token=token) as c, \
                vmkit.Client(url=lay.api_url(1), token=token) as h1:
            for i in (2, 3):  # the image reaches h2 and h3 once, outside the timings
                c.run(name=f"warm{i}", host=f"h{i}")
                c.remove_vm(f"warm{i}", force=True)
            placed, single = [], []
            for i in range(n):  # alternately, each VM removed after: the same load for both
                placed.append(timed(lambda i=i: c.run(name=f"p{i}")))
                single.append(timed(lambda i=i: h1.run(name=f"s{i}")))
                c.remove_vm(f"p{i}", force=True)
                h1.remove_vm(f"s{i}", force=True)
            print(f"placement  cluster {statistics.median(placed):.2f} s, single host "
                  f"{statistics.median(single):.2f} s median of {n}: "
                  f"{statistics.median(placed) / statistics.median(single):.2f}x")
            before = etcd_requests(lay)
            reserved = [c.place(f"q{i}") for i in range(n)]  # placements alone, back to back
            print(f"etcd       {(etcd_requests(lay) - before) / n:.1f} requests per placement "
                  "(whole cluster, members' renewals meanwhile included)")
            for p in reserved:
                c.unplace(p.name, p.host)
            moving = [f"m{i}" for i in range(n)]
            for name in moving:
                c.run(name=name, host="h2")
            with vmkit.Client(url=lay.api_url(2), token=token) as h2:
                seq = timed(lambda: [h2.wait_operation(h2.migrate(
                    name, lay.api_url(1), token, watch=5.0).id) for name in moving])
            drain = timed(lambda: c.drain("h1", watch=5.0))
            print(f"drain      {n} VMs: drain {drain:.1f} s, {n} sequential migrate "
                  f"{seq:.1f} s")
    finally:
        demo.down(lay)
        subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()

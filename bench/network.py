"""Network throughput and latency: vmkit's networks against plain QEMU with the same netdevs.

    sudo python bench/network.py [--runs 3] [--mib 32] [--driver bridge|switch]

Everything runs in a network namespace made for the run.

guest to guest   two VMs on an isolated private network (bridge + TAP, vmkit net create);
                 netcat streams MIB MiB from one to the
                 other; ping gives the round trip
host to guest    a port forward of user-mode networking (-p): MIB MiB from a host socket into
                 netcat in the guest, and HTTP requests to busybox httpd in it
plain QEMU       copies of the same VMs (their QEMU command lines, own disks, own TAPs on the
                 same bridge, own MACs, their own forwarded port), measured the same way
                 through their guest agents

vmkit only sets networks up; the data goes through QEMU either way, so the ratios show
whether vmkit's set-up (TAPs, bridge, firewall rules, dnsmasq) costs anything on the path.

--driver switch: vmkit's private network is the switch a vmkitd without root makes (QEMU
dgram sockets, frames switched in vmkitd's Python); plain QEMU stays on a kernel bridge made
here, so the ratio is the price of switching in userspace.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import open_home, ratio, row, stop_daemon
from rawsnap import RawGuest

import vmkit

NS = "vmkit-bench-net"
PORT_VMKIT, PORT_RAW = 18501, 18502


class Agent:
    """guest-exec through a guest agent socket (vmkit's own client does this for its VMs)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _call(self, s: socket.socket, cmd: str, args: dict) -> dict:
        s.sendall(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(65536)
        return json.loads(buf.split(b"\n")[0])["return"]

    def run(self, argv: list[str]) -> tuple[int, bytes]:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.path))
            s.sendall(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":77}}\n')
            buf = b""
            while b"77}" not in buf:
                buf += s.recv(4096)
            pid = self._call(s, "guest-exec", {"path": argv[0], "arg": argv[1:],
                                               "capture-output": True})["pid"]
            while not (st := self._call(s, "guest-exec-status", {"pid": pid}))["exited"]:
                time.sleep(0.01)
        return st["exitcode"], base64.b64decode(st.get("out-data", ""))


def vmkit_runner(client: vmkit.Client, vm: str):
    def run(argv: list[str]) -> tuple[int, bytes]:
        r = client.exec(vm, argv)
        return r.exit_code, r.stdout
    return run


def address(run) -> str:
    out = run(["sh", "-c", "ip -4 -o addr show eth0"])[1].decode().split()
    return out[out.index("inet") + 1].split("/")[0]


def guest_to_guest(send, recv, mib: int) -> tuple[float, float]:
    """(Mbit/s, round trip ms) from the sender to the receiver's address."""
    target = address(recv)
    recv(["sh", "-c", "netcat -l 5001 > /dev/null 2>&1 &"])
    time.sleep(0.5)
    overhead = min(_timed(send, ["true"]) for _ in range(3))
    took = _timed(send, ["sh", "-c", f"dd if=/dev/zero bs=64k count={mib * 16} 2>/dev/null "
                                     f"| netcat -N {target} 5001"]) - overhead
    ping = send(["ping", "-c", "10", "-i", "0.2", target])[1].decode()
    rtt = float(ping.split("min/avg/max = ")[1].split("/")[1])
    return mib * 8 * 1.048576 / took, rtt


def _timed(run, argv: list[str]) -> float:
    start = time.monotonic()
    code, _ = run(argv)
    assert code == 0, argv
    return time.monotonic() - start


def host_to_guest(run, port: int, mib: int) -> tuple[float, float]:
    """(Mbit/s into the guest through its forwarded port, HTTP request ms median)."""
    run(["sh", "-c", "netcat -l 5001 > /dev/null 2>&1 &"])
    time.sleep(0.5)
    data = b"\0" * (1 << 20)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(mib):
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    mbit = mib * 8 * 1.048576 / (time.monotonic() - start)
    run(["sh", "-c", "mkdir -p /w && echo ok > /w/i && httpd -p 5001 -h /w"])
    time.sleep(0.3)
    samples = []
    for _ in range(20):
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /i HTTP/1.0\r\n\r\n")
            while s.recv(4096):
                pass
        samples.append((time.monotonic() - start) * 1000)
    return mbit, statistics.median(samples)


def raw_copy(home: Path, vm: str, tap: str | None, mac: str, port: int | None) -> RawGuest:
    """A plain QEMU copy of a vmkit VM with its own TAP, MAC and forwarded port."""
    raw = RawGuest(home / "vms" / vm / "launched.json")
    argv = [re.sub(r"mac=[0-9a-f:]+", f"mac={mac}", a) for a in raw.argv]
    if tap:  # the TAP in place of whatever the VM's private NIC is (a TAP or switch socket)
        argv = [re.sub(r"^(tap|dgram),id=(net\d+),.*", rf"tap,id=\2,ifname={tap},script=no,"
                       "downscript=no", a) for a in argv]
    if port:
        argv = [a.replace(f":{PORT_VMKIT}-", f":{port}-") for a in argv]
    raw.argv = argv
    return raw


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


async def measure(home: Path, c: vmkit.Client, runs: int, mib: int
                  ) -> tuple[dict[str, list[float]], str]:
    """Both sides, run after run; plain QEMU's copies live in this event loop."""
    net = c.create_network("bench", isolated=True)
    for vm in ("ga", "gb"):
        c.create_vm(vm, network="bench")
    c.create_vm("gp", network="restricted", ports=[f"{PORT_VMKIT}:5001"])
    bridge = net["bridge"]
    if not bridge:  # a switched network: plain QEMU's copies get a bridge of their own
        bridge = "vkbenchbr"
        ip("link", "add", bridge, "type", "bridge")
        ip("link", "set", bridge, "up")
    for tap in ("vkbenchra", "vkbenchrb"):
        ip("tuntap", "add", "dev", tap, "mode", "tap")
        ip("link", "set", tap, "master", bridge)
        ip("link", "set", tap, "up")
    raws = [raw_copy(home, "ga", "vkbenchra", "52:54:00:be:00:01", None),
            raw_copy(home, "gb", "vkbenchrb", "52:54:00:be:00:02", None),
            raw_copy(home, "gp", None, "52:54:00:be:00:03", PORT_RAW)]
    results: dict[str, list[float]] = {k: [] for k in (
        "v_mbit", "v_rtt", "r_mbit", "r_rtt", "v_fwd", "v_http", "r_fwd", "r_http")}
    try:
        for raw in raws:
            await raw.boot()
        ra, rb, rp = (Agent(r.tmp / "agent.sock").run for r in raws)
        if not net["bridge"]:  # no DHCP on the bench's own bridge: fixed addresses
            for run, address in ((ra, "10.77.250.2/24"), (rb, "10.77.250.3/24")):
                run(["sh", "-c", f"killall udhcpc; ip addr add {address} dev eth0"])
        for i in range(runs):
            for key, (m, r) in (
                    ("v", guest_to_guest(vmkit_runner(c, "ga"), vmkit_runner(c, "gb"), mib)),
                    ("r", guest_to_guest(ra, rb, mib))):
                results[f"{key}_mbit"].append(m)
                results[f"{key}_rtt"].append(r)
            for key, (m, r) in (("v", host_to_guest(vmkit_runner(c, "gp"), PORT_VMKIT, mib)),
                                ("r", host_to_guest(rp, PORT_RAW, mib))):
                results[f"{key}_fwd"].append(m)
                results[f"{key}_http"].append(r)
            print(f"  run {i + 1}: guest-guest {results['v_mbit'][-1]:.0f} vs "
                  f"{results['r_mbit'][-1]:.0f} Mbit/s; host-guest {results['v_fwd'][-1]:.0f} "
                  f"vs {results['r_fwd'][-1]:.0f} Mbit/s", flush=True)
    finally:
        for raw in raws:
            await raw.close()
    return results, c.info()["accel"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--driver", choices=("bridge", "switch"), default="bridge",
                        help="what vmkit's private network is made of (see above)")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver == "switch":
        os.environ["VMKIT_NETWORKS"] = "switch"  # for the daemon started in the namespace
    if os.geteuid() != 0:
        sys.exit("bench/network.py needs root: private networks are bridges and TAPs")
    if not args.inside:  # the image is built here; the rest runs in a namespace of its own
        home, c = open_home(None)
        stop_daemon(home, c)
        subprocess.run(["ip", "netns", "add", NS], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"],
                           check=True)
            sys.exit(subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__,
                                     "--inside", str(home), "--runs", str(args.runs), "--mib",
                                     str(args.mib), "--driver", args.driver]).returncode)
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=False)
    home, c = open_home(args.inside)
    try:
        results, accel = asyncio.run(measure(home, c, args.runs, args.mib))
    finally:
        for vm in ("ga", "gb", "gp"):
            with contextlib.suppress(vmkit.VmkitError):
                c.remove_vm(vm, force=True)
        with contextlib.suppress(vmkit.VmkitError):
            c.remove_network("bench")
        stop_daemon(home, c)
    one = "{:.0f} Mbit/s"
    print(f"\nnetwork, tiny image, 256 MiB, 1 vCPU, accel={accel}, {args.mib} MiB per transfer,"
          f" vmkit's private network: {args.driver}")
    print(row(f"vmkit private network ({args.driver}), guest to guest", results["v_mbit"],
              fmt=one))
    print(row("plain QEMU, a bridge, own TAPs", results["r_mbit"], fmt=one))
    print(row("vmkit private network, ping round trip", results["v_rtt"], fmt="{:.2f} ms"))
    print(row("plain QEMU, ping round trip", results["r_rtt"], fmt="{:.2f} ms"))
    print(row("vmkit port forward, host to guest", results["v_fwd"], fmt=one))
    print(row("plain QEMU port forward, host to guest", results["r_fwd"], fmt=one))
    print(row("vmkit port forward, HTTP request", results["v_http"], fmt="{:.1f} ms"))
    print(row("plain QEMU port forward, HTTP request", results["r_http"], fmt="{:.1f} ms"))
    print(ratio("ratio guest-guest throughput vmkit / QEMU", results["v_mbit"], results["r_mbit"]))
    print(ratio("ratio host-guest throughput vmkit / QEMU", results["v_fwd"], results["r_fwd"]))


if __name__ == "__main__":
    main()

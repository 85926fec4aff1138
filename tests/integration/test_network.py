"""User-mode NAT: port forwards reach servers in the guest; no network means no NIC."""

from __future__ import annotations

import socket
import time

import httpx

import vmkit

from ..conftest import free_port


def _get(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_tcp_port_forward_reaches_guest_server(client: vmkit.Client, make_vm) -> None:
    port = free_port()
    vm = make_vm("web1", ports=[f"{port}:8080"])
    assert vm["ports"] == [{"host_addr": "127.0.0.1", "host_port": port, "guest_port": 8080,
                            "proto": "tcp"}]
    script = "mkdir -p /www && echo hello-from-web1 > /www/index.html && httpd -p 8080 -h /www"
    assert client.exec("web1", ["sh", "-c", script]).exit_code == 0
    r = _get(f"http://127.0.0.1:{port}/index.html", time.monotonic() + 20)
    assert r.status_code == 200 and r.text == "hello-from-web1\n"


def test_udp_port_forward(client: vmkit.Client, make_vm) -> None:
    port = free_port()
    make_vm("udp1", ports=[f"127.0.0.1:{port}:5000/udp"])
    # A UDP listener in the guest (the tiny image's netcat) writes what it receives to a file.
    client.exec("udp1", ["sh", "-c", "setsid netcat -u -l 5000 > /tmp/got 2>/dev/null &"])
    deadline = time.monotonic() + 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while time.monotonic() < deadline:
            s.sendto(b"ping-udp\n", ("127.0.0.1", port))
            time.sleep(0.3)
            if b"ping-udp" in client.exec("udp1", ["cat", "/tmp/got"]).stdout:
                return
    raise AssertionError("the UDP datagram never reached the guest")


def test_network_none_has_no_nic(client: vmkit.Client, make_vm) -> None:
    make_vm("nonet1", network="none")
    links = client.exec("nonet1", ["ls", "/sys/class/net"]).stdout.split()
    assert links == [b"lo"]

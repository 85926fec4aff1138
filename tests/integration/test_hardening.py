"""A hostile or careless user against a real vmkitd and real guests: names that try to act on
another VM (CLI, SDK, raw HTTP on the socket), exec input at and over its limits, an empty
network list, a log that is followed after its VM stops, two VMs racing for one port."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import vmkit

from ..conftest import Daemon, free_port

pytestmark = pytest.mark.integration

HOSTILE = ["../../victim", "../victim", "..", "a/../victim", "victim?", "victim#", "%2e%2e",
           "..%2Fvictim", "pf1%2Fsnapshots"]


def _raw(home: Path, request: bytes) -> tuple[int, bytes]:
    """One HTTP request on vmkitd's socket, with the path exactly as written: status, body."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(home / "run" / "vmkitd.sock"))
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_names_never_reach_another_vm(daemon: Daemon, client: vmkit.Client, make_vm) -> None:
    make_vm("victim", network="none")
    make_vm("pf1", network="none")
    client.create_snapshot("pf1", "s1", memory=False)
    commands = [("snapshot", "rm", "pf1"), ("snapshot", "restore", "pf1"), ("rm", "-f"),
                ("stop",), ("kill",), ("start",), ("pause",), ("inspect",), ("logs",),
                ("template", "rm"), ("fork", "pf1@s1"), ("snapshot", "ls")]
    for command in commands:
        for bad in ("../../victim", "../victim", "victim?", "pf1%2Fsnapshots"):
            r = daemon.cli(*command, bad)
            err = r.stderr.decode()
            assert r.returncode != 0 and "Traceback" not in err, (command, bad, err)
            assert "name" in err, (command, bad, err)
    for bad in HOSTILE:
        with pytest.raises(vmkit.InvalidInputError):
            client.remove_snapshot("pf1", bad)
        with pytest.raises(vmkit.InvalidInputError):
            client.exec(bad, ["true"])
    # Raw HTTP, as the old client sent it: dot segments and encoded slashes are refused.
    for method, path in [("DELETE", "/v1/vms/pf1/snapshots/../../victim"),
                         ("POST", "/v1/vms/pf1/snapshots/../../victim/kill"),
                         ("DELETE", "/v1/vms/pf1/snapshots/..%2F..%2Fvictim"),
                         ("DELETE", "/v1/vms/victim%2Fsnapshots%2Fs1"),
                         ("POST", "/v1/vms/%2e%2e/vms/victim/kill")]:
        status, body = _raw(daemon.home, f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        assert status == 404 and json.loads(body)["error"] == "not_found", (path, status, body)
    assert client.get_vm("victim")["state"] == "running"
    assert client.exec("victim", ["true"]).exit_code == 0
    assert [s["name"] for s in client.list_snapshots("pf1")] == ["s1"]


def test_exec_input_both_ways_and_at_its_limits(daemon: Daemon, client: vmkit.Client,
                                                make_vm) -> None:
    make_vm("ex1", network="none")
    # Any bytes in, any bytes out: UTF-8 text and bytes that are not UTF-8.
    data = "héllo wörld €\n".encode() + bytes(range(256))
    assert client.exec("ex1", ["cat"], stdin=data).stdout == data
    r = daemon.cli("exec", "ex1", "--", "cat", input="é\n".encode())
    assert r.returncode == 0 and r.stdout == "é\n".encode(), r
    assert client.exec("ex1", ["printf", "%s", "ü"]).stdout == "ü".encode()
    # A NUL cannot be in an argument: refused, not mangled.
    with pytest.raises(vmkit.InvalidInputError, match="NUL"):
        client.exec("ex1", ["echo", "a\0b"])
    # stdin at the limit reaches the command whole; over it is refused; the agent lives on.
    big = b"x" * (1 << 20)
    assert client.exec("ex1", ["wc", "-c"], stdin=big).stdout.split() == [b"1048576"]
    with pytest.raises(vmkit.TooLargeError, match="stdin"):
        client.exec("ex1", ["wc", "-c"], stdin=big + b"y")
    with pytest.raises(vmkit.InvalidInputError, match="together"):
        client.exec("ex1", ["echo", *["x" * (100 << 10)] * 3])
    # A 50 MB body is answered from its headers: vmkitd does not read it.
    status, body = _raw(daemon.home, b"POST /v1/vms/ex1/exec HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 52428800\r\n"
                        b"Connection: close\r\n\r\n")
    assert status == 413 and json.loads(body)["error"] == "too_large"
    assert client.exec("ex1", ["echo", "still here"]).stdout == b"still here\n"
    # The same stdin as the raw API takes it: base64, and non-ASCII text is a clear 422.
    status, body = _raw(daemon.home, _post("/v1/vms/ex1/exec", {"argv": ["cat"], "stdin": "é"}))
    assert status == 422 and "base64" in json.loads(body)["message"]
    stdin = base64.b64encode("é".encode()).decode()
    status, body = _raw(daemon.home, _post("/v1/vms/ex1/exec", {"argv": ["cat"], "stdin": stdin}))
    assert status == 200 and b'{"stdout": "w6k="}' in body  # base64 of the same two bytes


def _post(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


def test_unknown_fields_and_empty_network(client: vmkit.Client, daemon: Daemon,
                                          make_vm) -> None:
    status, body = _raw(daemon.home, _post("/v1/vms", {"name": "qa1", "qemu_args": ["-s"]}))
    assert status == 422 and "unknown field 'qemu_args'" in json.loads(body)["message"]
    assert not client.list_vms() or "qa1" not in {v["name"] for v in client.list_vms()}
    make_vm("nonic", network=[])
    vm = client.get_vm("nonic")
    assert vm["network"] == "none" and vm["networks"] == []
    # The guest itself sees no network card, only loopback.
    assert client.exec("nonic", ["ls", "/sys/class/net"]).stdout.split() == [b"lo"]


def test_following_a_log_ends_when_the_vm_stops(client: vmkit.Client, daemon: Daemon,
                                                make_vm) -> None:
    make_vm("lf1", network="none")
    follower = subprocess.Popen([sys.executable, "-m", "vmkit.cli.main", "logs", "-f", "lf1"],
                                env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client.stop_vm("lf1")
    out, err = follower.communicate(timeout=60)  # ends by itself
    assert follower.returncode == 0 and out, err
    assert b"not running" in err
    # A stopped VM's log is printed whole, then the command ends.
    r = daemon.cli("logs", "-f", "lf1", timeout=60)
    assert r.returncode == 0 and r.stdout == out[:len(r.stdout)] and r.stdout


def test_two_vms_racing_for_one_port(client: vmkit.Client, daemon: Daemon, make_vm) -> None:
    port = free_port()

    def make(name: str) -> object:
        try:
            return make_vm(name, ports=[f"{port}:22"])
        except vmkit.VmkitError as e:
            return e

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(make, ["race-a", "race-b"]))
    errors = [r for r in results if isinstance(r, vmkit.VmkitError)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], vmkit.ConflictError), errors[0]
    assert f"{port}" in errors[0].message and "host port" in errors[0].message
    assert "Could not set up" not in errors[0].message
    loser = "race-a" if results[0] is errors[0] else "race-b"
    assert loser not in {v["name"] for v in client.list_vms()}
    assert not (daemon.home / "vms" / loser).exists()

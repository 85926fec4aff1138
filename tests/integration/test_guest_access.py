"""Files in and out, the serial console and its log."""

from __future__ import annotations

import os
import time

import vmkit


def test_copy_in_and_out_round_trip(client: vmkit.Client, make_vm) -> None:
    make_vm("cp1")
    data = os.urandom(3 * 1024 * 1024 + 17)  # several agent chunks, odd size
    assert client.write_file("cp1", "/root/blob", data) == len(data)
    sha = client.exec("cp1", ["sha256sum", "/root/blob"]).stdout.split()[0].decode()
    import hashlib

    assert sha == hashlib.sha256(data).hexdigest()
    assert b"".join(client.read_file("cp1", "/root/blob")) == data


def test_copy_errors_are_clear(client: vmkit.Client, make_vm) -> None:
    make_vm("cp2")
    import pytest

    with pytest.raises(vmkit.AgentError, match="No such file"):
        b"".join(client.read_file("cp2", "/does/not/exist"))
    with pytest.raises(vmkit.InvalidInputError, match="absolute"):
        client.write_file("cp2", "relative/path", b"x")


def test_console_round_trip(client: vmkit.Client, make_vm) -> None:
    make_vm("con1")
    with client.console("con1") as ws:
        ws.send_bytes(b"\recho vmkit-$((6*7))\r")
        seen = b""
        deadline = time.monotonic() + 20
        while b"vmkit-42" not in seen and time.monotonic() < deadline:
            seen += ws.receive_bytes(timeout=20)
    assert b"vmkit-42" in seen


def test_logs_keep_serial_output(client: vmkit.Client, make_vm) -> None:
    make_vm("log1")
    with client.console("log1") as ws:
        ws.send_bytes(b"\recho marker-$((1+1))-in-log\r")
        time.sleep(1)
    log = b"".join(client.logs("log1"))
    assert b"marker-2-in-log" in log
    assert b"BusyBox" in log  # the guest's boot output is there too

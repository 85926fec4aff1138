"""Files in and out, the serial console and its log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import vmkit

from ..conftest import Daemon


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
    with pytest.raises(vmkit.InvalidInputError, match="/root is a directory"):
        b"".join(client.read_file("cp2", "/root"))


def test_cp_out_refuses_an_endless_device(daemon: Daemon, client: vmkit.Client, make_vm,
                                          tmp_path: Path) -> None:
    make_vm("cp3")
    r = daemon.cli("cp", "cp3:/dev/zero", f"{tmp_path}/")
    assert r.returncode == 1
    assert b"/dev/zero is not a regular file" in r.stderr and b"head -c" in r.stderr
    assert list(tmp_path.iterdir()) == []
    # Files that report no size (/proc) or a wrong one (sysfs says 4096) still copy whole.
    assert daemon.cli("cp", "cp3:/proc/cpuinfo", str(tmp_path)).returncode == 0
    assert b"processor\t: 0" in (tmp_path / "cpuinfo").read_bytes()
    mac = client.exec("cp3", ["cat", "/sys/class/net/eth0/address"]).stdout
    assert len(mac) == 18
    assert b"".join(client.read_file("cp3", "/sys/class/net/eth0/address")) == mac


def test_cp_out_stopped_by_a_signal_leaves_no_partial_file(daemon: Daemon, client: vmkit.Client,
                                                           make_vm, tmp_path: Path) -> None:
    make_vm("cp4")
    made = client.exec("cp4", ["dd", "if=/dev/urandom", "of=/root/big", "bs=1M", "count=20"])
    assert made.exit_code == 0, made.stderr
    cp = subprocess.Popen([sys.executable, "-m", "vmkit.cli.main", "cp", "cp4:/root/big",
                           str(tmp_path)], env=daemon.env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    try:
        guard = time.monotonic() + 120
        while not list(tmp_path.glob(".big.*.part")):
            assert cp.poll() is None, cp.communicate()
            assert time.monotonic() < guard, "the copy never started"
            time.sleep(0.02)
        cp.terminate()
        _, err = cp.communicate(timeout=60)
    finally:
        if cp.poll() is None:
            cp.kill()
    assert cp.returncode == 143, err
    assert list(tmp_path.iterdir()) == []


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


def test_terminal_through_the_sdk(client: vmkit.Client, make_vm) -> None:
    make_vm("tty2")
    with client.terminal("tty2", rows=20, cols=70) as t:
        t.send(b"stty size; exit 9\n")  # typed before the prompt: the terminal keeps it
        out = b""
        while isinstance(got := t.receive(timeout=60), bytes):
            out += got
    assert got == 9 and b"20 70" in out
    # More output than the helper's segments hold (256 KiB each), all of it, in order.
    script = "head -c 700000 /dev/zero | tr '\\0' x; echo; echo the-end"
    with client.terminal("tty2", ["sh", "-c", script]) as t:
        out = b""
        while isinstance(got := t.receive(timeout=120), bytes):
            out += got
    assert got == 0 and out.count(b"x") == 700000 and out.endswith(b"the-end\r\n")
    import pytest

    with pytest.raises(vmkit.NotFoundError), client.terminal("no-such-vm") as t:
        t.receive(timeout=10)


def test_cp_r_both_ways_keeps_modes_and_times(daemon: Daemon, make_vm, tmp_path: Path) -> None:
    make_vm("cp5")
    src = tmp_path / "site"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_bytes(b"#!/bin/sh\n")
    (src / "sub" / "key").write_bytes(os.urandom(5000))
    os.chmod(src / "run.sh", 0o750)
    os.chmod(src / "sub" / "key", 0o600)
    for f in (src / "run.sh", src / "sub" / "key"):
        os.utime(f, (1577934245, 1577934245))
    r = daemon.cli("cp", str(src), "cp5:/root/")
    assert r.returncode == 1 and b"is a directory: copy it with -r" in r.stderr
    assert daemon.cli("cp", "-r", str(src), "cp5:/root/").returncode == 0  # -> /root/site
    assert daemon.cli("cp", str(src / "run.sh"), "cp5:/root/renamed").returncode == 0
    seen = daemon.cli("exec", "cp5", "--", "stat", "-c", "%n %a %Y %U",
                      "/root/site/run.sh", "/root/site/sub/key", "/root/renamed").stdout
    assert seen.decode().splitlines() == ["/root/site/run.sh 750 1577934245 root",
                                          "/root/site/sub/key 600 1577934245 root",
                                          "/root/renamed 750 1577934245 root"]
    back = tmp_path / "back"
    assert daemon.cli("cp", "-r", "cp5:/root/site", str(back)).returncode == 0
    assert (back / "sub" / "key").read_bytes() == (src / "sub" / "key").read_bytes()
    for rel, mode in (("run.sh", 0o750), ("sub/key", 0o600)):
        st = (back / rel).stat()
        assert (st.st_mode & 0o777, int(st.st_mtime)) == (mode, 1577934245)
    assert daemon.cli("cp", "cp5:/root/renamed", str(tmp_path)).returncode == 0
    assert (tmp_path / "renamed").stat().st_mode & 0o777 == 0o750
    r = daemon.cli("cp", "cp5:/root/site", str(tmp_path))
    assert r.returncode == 1 and b"cp5:/root/site is a directory: copy it with -r" in r.stderr
    r = daemon.cli("cp", "cp5:/root/none", str(tmp_path))
    assert r.returncode == 1 and r.stderr.strip() == b"vmkit: cp5:/root/none does not exist"

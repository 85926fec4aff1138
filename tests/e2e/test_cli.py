"""The vmkit command as a user runs it: happy paths, and every kind of bad input giving one
clear line, a non-zero exit status, no traceback, and nothing half-created."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from ..conftest import Daemon, free_port


def ok(d: Daemon, *args: str, **kw) -> str:
    r = d.cli(*args, **kw)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def fails(d: Daemon, *args: str, match: str, code: int = 1) -> str:
    r = d.cli(*args)
    err = r.stderr.decode()
    assert r.returncode == code, (r.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err
    return err


def vm_names(d: Daemon) -> set[str]:
    return {vm["name"] for vm in json.loads(ok(d, "ls", "--json"))}


def assert_nothing_left(d: Daemon, name: str) -> None:
    assert name not in vm_names(d)
    assert not (d.home / "vms" / name).exists()


def test_run_ls_exec_cp_stop_start_rm(daemon: Daemon, tmp_path: Path) -> None:
    port = free_port()
    assert ok(daemon, "run", "-d", "--name", "cli1", "--network", "restricted", "--memory",
              "192M", "-p", f"{port}:80").strip() == "cli1"
    listed = {vm["name"]: vm for vm in json.loads(ok(daemon, "ls", "--json"))}["cli1"]
    assert {k: listed[k] for k in ("name", "state", "image", "cpus", "memory")} == {
        "name": "cli1", "state": "running", "image": "tiny", "cpus": 1, "memory": "192M"}
    assert listed["ports"][0]["host_port"] == port
    table = ok(daemon, "ls")
    assert "cli1" in table and "running" in table and f"127.0.0.1:{port}->80/tcp" in table
    assert json.loads(ok(daemon, "inspect", "cli1", "--json"))["mac"] == listed["mac"]

    r = daemon.cli("exec", "cli1", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert ok(daemon, "exec", "cli1", "--", "ls", "-d", "/etc") == "/etc\n"
    assert ok(daemon, "exec", "cli1", "--", "tr", "a-z", "A-Z", input=b"hello") == "HELLO"

    src = tmp_path / "in.txt"
    src.write_bytes(b"payload\n" * 1000)
    ok(daemon, "cp", str(src), "cli1:/root/in.txt")
    ok(daemon, "cp", "cli1:/root/in.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()

    ok(daemon, "stop", "cli1")
    assert json.loads(ok(daemon, "inspect", "cli1", "--json"))["state"] == "stopped"
    ok(daemon, "start", "cli1")
    assert ok(daemon, "exec", "cli1", "--", "cat", "/root/in.txt") == src.read_text()
    assert b"BusyBox" in daemon.cli("logs", "cli1").stdout
    ok(daemon, "rm", "-f", "cli1")
    assert_nothing_left(daemon, "cli1")


def test_run_with_rm_removes_the_vm_when_it_stops(daemon: Daemon) -> None:
    ok(daemon, "run", "-d", "--rm", "--name", "gone1", "--network", "none")
    ok(daemon, "stop", "gone1")
    for _ in range(50):
        if "gone1" not in vm_names(daemon):
            break
        time.sleep(0.1)
    assert_nothing_left(daemon, "gone1")


@pytest.mark.parametrize("args, match", [
    (["--name", "a/b"], "invalid VM name 'a/b'"),
    (["--name", "a.b"], "invalid VM name 'a.b'"),
    (["--name", "x" * 64], "invalid VM name"),
    (["--memory", "lots"], "cannot read memory 'lots'"),
    (["--memory", "16T"], "memory 16T is more than vmkit gives a VM"),
    (["--memory", "0"], "memory 0 is too little: a VM needs at least 64M"),
    (["--name", ""], "invalid VM name ''"),
    (["--cpus", "0"], "cpus 0 is out of range"),
    (["--disk", "10Q"], "cannot read disk size '10Q'"),
    (["--disk", "100M"], "smaller than the image"),
    (["-p", "80"], "invalid port forward '80'"),
    (["-p", "99999:80"], "invalid port '99999'"),
])
def test_bad_run_arguments(daemon: Daemon, args: list[str], match: str) -> None:
    before = vm_names(daemon)
    fails(daemon, "run", "-d", "--network", "restricted", *(["--name", "bad1"] if
          "--name" not in args else []), *args, match=match)
    assert vm_names(daemon) == before
    assert not (daemon.home / "vms" / "bad1").exists()


def test_unknown_vm_and_image(daemon: Daemon) -> None:
    for verb in ("stop", "start", "inspect", "logs", "console", "rm", "pause", "kill"):
        fails(daemon, verb, "nope", match="no VM named 'nope'")
    fails(daemon, "exec", "nope", "--", "true", match="no VM named 'nope'", code=125)
    fails(daemon, "run", "-d", "nosuchimage", "--name", "img1", match="image 'nosuchimage' not found")
    assert_nothing_left(daemon, "img1")


def test_duplicate_name_and_port_in_use(daemon: Daemon) -> None:
    ok(daemon, "run", "-d", "--name", "dup1", "--network", "none")
    try:
        fails(daemon, "run", "-d", "--name", "dup1", "--network", "none",
              match="a VM named dup1 already exists")
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            fails(daemon, "run", "-d", "--name", "port1", "--network", "restricted",
                  "-p", f"{port}:80", match=f"host port 127.0.0.1:{port}/tcp is not available")
        assert_nothing_left(daemon, "port1")
        again = daemon.cli("start", "dup1")  # as docker: a no-op with a note, not an error
        assert (again.returncode, again.stdout) == (0, b"dup1\n"), again.stderr
        assert b"dup1 is running already" in again.stderr
    finally:
        ok(daemon, "rm", "-f", "dup1")


def test_home_not_writable(daemon: Daemon) -> None:
    bad = Daemon(Path("/proc/vmkit-home"))
    fails(bad, "ls", match="/proc/vmkit-home")


def test_qemu_missing(own_daemon) -> None:
    d = own_daemon(PATH="/nonexistent")
    fails(d, "run", "-d", "--name", "noqemu", match="QEMU is not installed")
    assert_nothing_left(d, "noqemu")


def test_corrupt_base_image(own_daemon) -> None:
    d = own_daemon(copy_images=True)
    rootfs = next((d.home / "images").glob("*/rootfs.raw"))
    rootfs.chmod(0o644)
    with open(rootfs, "r+b") as f:  # flip one byte inside the filesystem's data
        f.seek(4096 * 300)
        byte = f.read(1)
        f.seek(4096 * 300)
        f.write(bytes([byte[0] ^ 0xFF]))
    fails(d, "run", "-d", "--name", "corrupt1", "--network", "none",
          match="image 'tiny' is corrupt")
    assert_nothing_left(d, "corrupt1")


def test_snapshot_fork_template_commands_and_their_bad_input(daemon: Daemon) -> None:
    ok(daemon, "run", "-d", "-n", "snapcli", "--network", "restricted")
    try:
        assert ok(daemon, "snapshot", "create", "snapcli", "s1").strip() == "s1"
        table = ok(daemon, "snapshot", "ls", "snapcli")
        assert table.splitlines()[0].split() == ["NAME", "CREATED", "SIZE", "MEMORY", "PARENT",
                                                 "USED", "BY"]
        assert "* s1" in table
        listed = json.loads(ok(daemon, "snapshot", "ls", "snapcli", "--json"))
        assert [(s["name"], s["memory"]) for s in listed] == [("s1", True)]

        fails(daemon, "snapshot", "create", "nosuch", match="no VM named 'nosuch'")
        fails(daemon, "snapshot", "create", "snapcli", "s1", match="already has a snapshot named s1")
        fails(daemon, "snapshot", "create", "snapcli", "bad name", match="snapshot name")
        fails(daemon, "snapshot", "restore", "snapcli", "nope", match="has no snapshot 'nope'")
        fails(daemon, "fork", "snapcli@nope", "x1", match="has no snapshot 'nope'")
        fails(daemon, "fork", "nosuch", "x1", match="no VM or template named 'nosuch'")
        fails(daemon, "fork", "snapcli@s1", "snapcli", match="already exists")
        fails(daemon, "fork", "snapcli@s1", "x1", "--network", "none", match="taken with 1 network card")
        fails(daemon, "run", "--from", "snapcli@s1", "--disk", "2G", "-n", "x1", match="--disk")
        assert "x1" not in vm_names(daemon)

        assert ok(daemon, "run", "-d", "--from", "snapcli@s1", "-n", "snapcli-3",
                  "--network", "restricted").strip() == "snapcli-3"
        assert json.loads(ok(daemon, "inspect", "snapcli-3", "--json"))["forked_from"] \
            == "snapcli@s1"
        ok(daemon, "rm", "-f", "snapcli-3")
        assert ok(daemon, "fork", "snapcli@s1", "snapcli-2").strip() == "snapcli-2"
        fails(daemon, "rm", "-f", "snapcli", match="its snapshots are used by VM snapcli-2")
        fails(daemon, "snapshot", "rm", "snapcli", "s1", match="used by VM snapcli-2")
        assert ok(daemon, "template", "create", "snapcli@s1", "--name", "snapcli-t").strip() \
            == "snapcli-t"
        fails(daemon, "template", "create", "snapcli@s1", "--name", "snapcli-t",
              match="template named snapcli-t exists")
        assert "snapcli-t" in ok(daemon, "template", "ls")
        ok(daemon, "rm", "-f", "snapcli-2")
        fails(daemon, "rm", "-f", "snapcli", match="template snapcli-t")
        ok(daemon, "template", "rm", "snapcli-t")
        fails(daemon, "template", "rm", "snapcli-t", match="no template named 'snapcli-t'")
        assert ok(daemon, "snapshot", "rm", "snapcli", "s1").strip() == "s1"
    finally:
        daemon.cli("rm", "-f", "snapcli-3")
        daemon.cli("rm", "-f", "snapcli-2")
        daemon.cli("template", "rm", "snapcli-t")
        daemon.cli("rm", "-f", "snapcli")
    assert_nothing_left(daemon, "snapcli")


def test_stop_start_twice_logs_inspect_format_version_completion(daemon: Daemon) -> None:
    ok(daemon, "run", "-d", "-n", "twice1", "--network", "restricted")
    try:
        r = daemon.cli("start", "twice1")  # runs already: a note, and success (as docker)
        assert r.returncode == 0 and r.stdout == b"twice1\n"
        assert r.stderr.decode().strip() == "vmkit: twice1 is running already"
        assert ok(daemon, "inspect", "-f", "{{.state}} {{.restart}}", "twice1") == \
            "running no\n"
        log = ok(daemon, "logs", "-n", "1", "twice1")
        assert log.count("\n") <= 1 and "\x1b" not in log and "\r" not in log
        assert "\x1b[6n" in daemon.cli("logs", "--raw", "twice1").stdout.decode()
        assert ok(daemon, "logs", "--since", "10m", "twice1") == ok(daemon, "logs", "twice1")
        fails(daemon, "logs", "--since", "yesterday", "twice1", match="such as 10m, 2h")
        ok(daemon, "update", "--restart", "on-failure", "twice1")
        assert ok(daemon, "inspect", "-f", "{{.restart}}", "twice1") == "on-failure\n"
        fails(daemon, "update", "--restart", "sometimes", "twice1", match="'no', 'on-failure' or 'always'")
        ok(daemon, "stop", "twice1")
        r = daemon.cli("stop", "twice1", "twice1")
        assert r.returncode == 0 and r.stdout == b"twice1\ntwice1\n"
        assert "twice1 is stopped already" in r.stderr.decode()
        assert "twice1 is stopped already" in daemon.cli("kill", "twice1").stderr.decode()
        assert "IP" in ok(daemon, "ls").splitlines()[0]
    finally:
        ok(daemon, "rm", "-f", "twice1")
    assert ok(daemon, "--version").startswith("vmkit ")
    assert "complete -o default -F _vmkit_completion vmkit" in ok(daemon, "completion", "bash")
    fails(daemon, "completion", "tcsh", match="bash, zsh and fish")

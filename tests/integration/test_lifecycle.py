"""A VM's life as the guest sees it: exec, persistence, pause, crash."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time

import pytest

import vmkit

from ..conftest import free_port, qemu_pids


def test_exec_returns_output_and_exit_code(client: vmkit.Client, make_vm) -> None:
    vm = make_vm("exec1")
    assert vm["state"] == "running"
    r = client.exec("exec1", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.exit_code, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    # The guest is who vmkit says: hostname = VM name, the agent runs, and DHCP had given
    # the NIC its address by the time the VM was reported ready.
    assert client.exec("exec1", ["hostname"]).stdout == b"exec1\n"
    assert client.exec("exec1", ["pidof", "qemu-ga"]).exit_code == 0
    assert b"inet 10.0.2.15/24" in client.exec("exec1", ["ip", "-4", "addr", "show", "eth0"]).stdout


def test_exec_streams_while_the_command_runs(client: vmkit.Client, make_vm) -> None:
    make_vm("stream1")
    events = client.exec_stream("stream1", ["sh", "-c", "echo first; sleep 3; echo second"])
    stream, data = next(events)
    seen_first = time.monotonic()
    assert (stream, data) == ("stdout", b"first\n")
    rest = list(events)
    assert ("stdout", b"second\n") in rest and rest[-1] == ("exit", 0)
    assert time.monotonic() - seen_first > 2  # 'first' arrived before the command ended


def test_exec_stdin_and_missing_command(client: vmkit.Client, make_vm) -> None:
    make_vm("stdin1")
    assert client.exec("stdin1", ["wc", "-c"], stdin=b"12345").stdout.strip() == b"5"
    missing = client.exec("stdin1", ["no-such-command"])
    assert missing.exit_code == 127 and b"not found" in missing.stderr


def test_file_survives_stop_and_start(client: vmkit.Client, make_vm) -> None:
    make_vm("persist1")
    assert client.exec("persist1", ["sh", "-c", "echo kept > /root/note && sync"]).exit_code == 0
    assert client.stop_vm("persist1")["state"] == "stopped"
    assert client.start_vm("persist1")["state"] == "running"
    assert client.exec("persist1", ["cat", "/root/note"]).stdout == b"kept\n"
    # Each VM has its own overlay: another VM from the same image does not see the file.
    make_vm("persist2")
    assert client.exec("persist2", ["cat", "/root/note"]).exit_code != 0


def test_restart_keeps_data_and_reboots(client: vmkit.Client, make_vm) -> None:
    make_vm("restart1")
    client.exec("restart1", ["sh", "-c", "echo x > /root/f; sync"])
    boot1 = client.get_vm("restart1")["started"]
    vm = client.restart_vm("restart1")
    assert vm["state"] == "running" and vm["started"] > boot1
    assert client.exec("restart1", ["cat", "/root/f"]).stdout == b"x\n"


def test_pause_and_resume(client: vmkit.Client, make_vm) -> None:
    make_vm("pause1")
    assert client.pause_vm("pause1")["state"] == "paused"
    with pytest.raises(vmkit.InvalidStateError, match="resume"):
        client.exec("pause1", ["true"])
    with pytest.raises(vmkit.InvalidStateError):
        client.pause_vm("pause1")
    assert client.resume_vm("pause1")["state"] == "running"
    assert client.exec("pause1", ["true"]).exit_code == 0


def test_guest_poweroff_is_a_clean_stop(client: vmkit.Client, make_vm) -> None:
    make_vm("off1")
    list(client.exec_stream("off1", ["sh", "-c", "poweroff &"]))
    deadline = time.monotonic() + 30
    while client.get_vm("off1")["state"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
    vm = client.get_vm("off1")
    assert vm["state"] == "stopped" and vm["reason"] == ""


def test_dead_qemu_is_reported_crashed(client: vmkit.Client, make_vm) -> None:
    vm = make_vm("crash1")
    # The console's last words hold terminal escapes, as a shell's prompt does (\x1b[6n).
    client.exec("crash1", ["sh", "-c", r"printf 'last words \033[1;31mred\033[0m\033[6n\n' "
                                       ">/dev/console"])
    logs, seen = client.logs("crash1", follow=True), b""
    while b"\x1b[6n" not in seen:  # in the serial log QEMU writes
        seen += next(logs)
    logs.close()
    os.kill(vm["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client.get_vm("crash1")["state"] != "crashed" and time.monotonic() < deadline:
        time.sleep(0.1)
    vm = client.get_vm("crash1")
    assert vm["state"] == "crashed"
    assert vm["reason"].startswith("QEMU was killed by signal 9 (SIGKILL); console: ")
    assert "last words red" in vm["reason"]  # the shell's prompt may follow
    assert not any(c < " " or "\x7f" <= c <= "\x9f" for c in vm["reason"]), vm["reason"]
    assert client.start_vm("crash1")["state"] == "running"


def test_rm_f_during_boot_fails_the_create_with_a_conflict(daemon, client: vmkit.Client
                                                          ) -> None:
    failed: list[vmkit.VmkitError] = []

    def create() -> None:
        with daemon.client() as c, pytest.raises(vmkit.VmkitError) as e:
            c.create_vm("race1", network="restricted")
        failed.append(e.value)

    creating = threading.Thread(target=create)
    creating.start()
    pid = None
    while creating.is_alive() and not (pid := _pid(client, "race1")):
        time.sleep(0.05)
    assert pid, failed
    os.kill(pid, signal.SIGSTOP)  # held mid-boot: it cannot finish before the rm
    assert client.get_vm("race1")["state"] == "starting"
    rm = daemon.cli("rm", "-f", "race1")
    creating.join()
    assert rm.returncode == 0, rm.stderr
    assert type(failed[0]) is vmkit.ConflictError and failed[0].status == 409
    assert failed[0].message == "VM race1 was removed while it was booting"
    with pytest.raises(vmkit.NotFoundError):
        client.get_vm("race1")
    assert not (daemon.home / "vms" / "race1").exists()
    assert pid not in qemu_pids(daemon.home)


def _pid(client: vmkit.Client, name: str) -> int | None:
    try:
        return client.get_vm(name)["pid"]
    except vmkit.NotFoundError:
        return None


def _freeze(client: vmkit.Client, name: str, also: str = "") -> None:
    """Freeze the guest agent a second after this exec has finished talking to it."""
    script = f"(sleep 1; {also} kill -STOP $(pidof qemu-ga)) >/dev/null 2>&1 &"
    client.exec(name, ["sh", "-c", script])
    time.sleep(2)


def test_stop_without_agent_uses_the_power_button(client: vmkit.Client, make_vm) -> None:
    make_vm("acpi1")
    _freeze(client, "acpi1")
    assert client.stop_vm("acpi1", timeout=15)["state"] == "stopped"
    log = b"".join(client.logs("acpi1"))
    assert b"The system is going down" in log  # busybox init shut down cleanly


def test_stop_of_a_deaf_guest_is_forced_after_the_timeout(client: vmkit.Client, make_vm) -> None:
    make_vm("deaf1")
    _freeze(client, "deaf1", also="killall acpid;")
    started = time.monotonic()
    assert client.stop_vm("deaf1", timeout=3)["state"] == "stopped"
    assert 3 <= time.monotonic() - started < 15
    assert b"The system is going down" not in b"".join(client.logs("deaf1"))


def test_bigger_disk_grows_the_root_filesystem(client: vmkit.Client, make_vm) -> None:
    make_vm("disk1", disk="2G")
    out = client.exec("disk1", ["df", "-k", "/"]).stdout.decode().splitlines()[-1]
    assert int(out.split()[1]) > 1_500_000  # KiB: the 1G image grew to about 2G


def test_resize_a_stopped_vm(client: vmkit.Client, make_vm) -> None:
    make_vm("grow1")
    client.exec("grow1", ["sh", "-c", "echo kept > /root/kept && sync"])
    with pytest.raises(vmkit.InvalidStateError, match="stop it first"):
        client.resize_vm("grow1", cpus=2)
    client.stop_vm("grow1")
    with pytest.raises(vmkit.InvalidInputError, match="never shrinks"):
        client.resize_vm("grow1", disk="64M")
    vm = client.resize_vm("grow1", cpus=2, memory="384M", disk="2G")
    assert (vm["cpus"], vm["memory"], vm["disk"]) == (2, "384M", "2G")
    client.start_vm("grow1")

    def guest(script: str) -> str:
        return client.exec("grow1", ["sh", "-c", script]).stdout.decode().strip()

    assert guest("nproc") == "2"
    assert 300_000 < int(guest("grep MemTotal /proc/meminfo").split()[1]) < 393_216  # KiB
    assert int(guest("df -k /").splitlines()[-1].split()[1]) > 1_500_000  # grown to ~2G
    assert guest("cat /root/kept") == "kept"


def _wait_for(what, deadline: float = 60.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while not (value := what()) and time.monotonic() < end:
        time.sleep(0.2)
    return value


def test_restart_always_brings_a_vm_back_after_a_crash_and_a_poweroff_not_a_stop(
        client: vmkit.Client, make_vm) -> None:
    vm = make_vm("back1", restart="always")
    assert vm["restart"] == "always"
    os.kill(vm["pid"], signal.SIGKILL)  # a crash
    assert _wait_for(lambda: (v := client.get_vm("back1"))["state"] == "running"
                     and v["pid"] != vm["pid"] and v)
    assert client.exec("back1", "cat /proc/uptime").exit_code == 0  # a string, split
    pid = client.get_vm("back1")["pid"]
    with contextlib.suppress(vmkit.AgentError):  # the agent may go down with the guest
        list(client.exec_stream("back1", ["sh", "-c", "poweroff &"]))  # its own shutdown
    assert _wait_for(lambda: (v := client.get_vm("back1"))["state"] == "running"
                     and v["pid"] != pid)
    client.stop_vm("back1")  # asked for: it stays stopped
    time.sleep(2)  # longer than the first back-off (0.5 s, doubling after short runs)
    assert client.get_vm("back1")["state"] == "stopped"


def test_restart_on_failure_brings_vms_back_when_vmkitd_starts_again(own_daemon) -> None:
    """A host reboot, as vmkitd sees it: every QEMU gone while it was not running."""
    d = own_daemon()
    with d.client() as c:
        c.create_vm("boot1", network="restricted", restart="on-failure")
        c.create_vm("boot2", network="restricted")
        pids = [c.get_vm(n)["pid"] for n in ("boot1", "boot2")]
    d.kill9()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    d.start()
    with d.client() as c:
        assert _wait_for(lambda: c.get_vm("boot1")["state"] == "running")
        assert c.get_vm("boot2")["state"] == "crashed"  # no policy: left as it is
        assert _wait_for(lambda: c.get_vm("boot1")["ips"]) == ["10.0.2.15"]  # the agent's
        for n in ("boot1", "boot2"):
            c.remove_vm(n, force=True)


def _take_port(sock: socket.socket, port: int) -> None:
    """Listen on 127.0.0.1:``port`` as soon as it is free (a VM's QEMU just died)."""
    end = time.monotonic() + 10
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return
        except OSError:
            assert time.monotonic() < end, f"port {port} stayed taken"
            time.sleep(0.005)


def test_start_and_stop_are_idempotent_and_a_stop_calls_off_a_waiting_restart(
        client: vmkit.Client, make_vm) -> None:
    port = free_port()
    vm = make_vm("idem1", ports=[f"{port}:80"])
    assert client._http.post("/v1/vms/idem1/start").status_code == 304  # as docker's API
    assert client.start_vm("idem1")["pid"] == vm["pid"]  # the SDK: nothing done, no error
    assert client.update_vm("idem1", restart="always")["restart"] == "always"  # running
    os.kill(vm["pid"], signal.SIGKILL)
    with socket.socket() as taken:  # while its port is taken, every restart fails and the
        _take_port(taken, port)     # next one waits (0.5 s, then 1 s, 2 s...)
        assert _wait_for(lambda: client.get_vm("idem1")["state"] == "crashed")
        assert client._http.post("/v1/vms/idem1/stop").status_code == 304  # calls it off
    time.sleep(3)  # longer than any restart could still wait by now
    assert client.kill_vm("idem1")["state"] == "crashed"  # down: the SDK returns it as is
    assert client.update_vm("idem1", restart="no")["restart"] == "no"


def test_logs_since_a_time_survive_a_vmkitd_restart(own_daemon) -> None:
    d = own_daemon()
    with d.client() as c:
        c.create_vm("since1", network="restricted")

        def say(word: str) -> None:
            assert c.exec("since1", f"sh -c 'echo {word} > /dev/ttyS0'").exit_code == 0

        def log(**kw: object) -> bytes:
            return b"".join(c.logs("since1", **kw))  # type: ignore[arg-type]

        say("early-words")
        # once vmkitd has dated them (it looks once a second), a read from now leaves them out
        assert _wait_for(lambda: b"early-words" not in log(since=time.time()), deadline=20)
        since = time.time()
        assert b"early-words" in log(since="1h") and b"early-words" in log(tail=1)
    d.kill9()  # the dates are on disk: a new vmkitd reads from them
    d.start()
    with d.client() as c:
        say("late-words")
        assert _wait_for(lambda: b"late-words" in log(since=since))
        assert b"early-words" not in log(since=since)
        assert b"late-words" in log(since=time.time() - 30, tail=1)
        c.remove_vm("since1", force=True)

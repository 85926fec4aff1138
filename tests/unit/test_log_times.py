"""'vmkit logs --since/--tail': when the serial log grew (core/logtimes.py), where a read
starts, and how the client reads a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from vmkit.client.logs import since_time
from vmkit.core import logtimes
from vmkit.core.logtimes import LogTimes, last_mark, log_start
from vmkit.errors import InvalidInputError
from vmkit.paths import HomePaths, VmPaths


@pytest.fixture
def vm(tmp_path: Path) -> VmPaths:
    vmp = HomePaths(tmp_path).vm("web")
    vmp.dir.mkdir(parents=True)
    return vmp


def _clock(vmp: VmPaths, running: bool = True) -> LogTimes:
    reg = SimpleNamespace(paths=SimpleNamespace(vm=lambda name: vmp),
                          machines={"web": object()} if running else {})
    return LogTimes(reg)  # type: ignore[arg-type]


def test_a_mark_each_time_the_log_grew_and_none_when_it_did_not(vm: VmPaths) -> None:
    times = _clock(vm)
    times.tick(100.0)  # no log yet
    vm.serial_log.write_bytes(b"boot\n")
    times.tick(101.0)
    times.tick(102.0)  # no growth: no mark
    with open(vm.serial_log, "ab") as f:
        f.write(b"login: ")
    times.tick(103.0)
    assert vm.serial_times.read_text() == "5 101.000\n12 103.000\n"
    assert last_mark(vm) == 12


def test_a_new_vmkitd_goes_on_from_the_marks_on_disk(vm: VmPaths) -> None:
    vm.serial_log.write_bytes(b"boot\n")
    _clock(vm).tick(101.0)
    _clock(vm).tick(200.0)  # a restarted daemon: the log did not grow meanwhile
    assert vm.serial_times.read_text() == "5 101.000\n"


def test_a_stopped_vm_gets_a_last_mark_then_is_forgotten(vm: VmPaths) -> None:
    times = _clock(vm)
    vm.serial_log.write_bytes(b"a\n")
    times.tick(1.0)
    times.reg.machines.clear()  # type: ignore[attr-defined]
    vm.serial_log.write_bytes(b"a\nbye\n")  # written as it ended
    times.tick(2.0)
    times.tick(3.0)
    assert vm.serial_times.read_text() == "2 1.000\n6 2.000\n"


def test_a_replaced_log_starts_its_marks_anew(vm: VmPaths) -> None:
    times = _clock(vm)
    vm.serial_log.write_bytes(b"a long first log\n")
    times.tick(1.0)
    vm.serial_log.write_bytes(b"new\n")
    times.tick(2.0)
    assert vm.serial_times.read_text() == "4 2.000\n"


LOG = b"one\ntwo\nthree\nfour"  # lines start at 0, 4, 8, 14


@pytest.mark.parametrize("since,start", [
    (50.0, 0),      # before every mark
    (101.5, 4),     # the last mark before it is at offset 6, inside "two": from its start
    (103.0, 14),    # marks before 103: 6, 14 (a mark at T exactly is not before T)
    (999.0, 14),    # after the last mark: what came after it
])
def test_since_starts_at_the_line_of_the_last_mark_before_it(vm: VmPaths, since: float,
                                                             start: int) -> None:
    vm.serial_log.write_bytes(LOG)
    vm.serial_times.write_text("6 101.0\ngarbage\n14 102.0\n18 103.0\n")
    assert log_start(vm, since=since) == start


@pytest.mark.parametrize("tail,start", [(0, 18), (1, 14), (2, 8), (4, 0), (9, 0)])
def test_tail_counts_an_unfinished_last_line(vm: VmPaths, tail: int, start: int) -> None:
    vm.serial_log.write_bytes(LOG)
    assert log_start(vm, tail=tail) == start
    vm.serial_log.write_bytes(LOG + b"\n")  # a finished last line: the same lines
    assert log_start(vm, tail=tail) == (19 if tail == 0 else start)


def test_lines_are_found_across_blocks(vm: VmPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logtimes, "BLOCK", 3)
    vm.serial_log.write_bytes(LOG)
    assert [log_start(vm, tail=n) for n in range(5)] == [18, 14, 8, 4, 0]
    vm.serial_times.write_text("6 101.0\n14 102.0\n")
    assert log_start(vm, since=101.5) == 4
    assert log_start(vm, since=101.5, tail=1) == 14  # both: the later start


def test_no_log_starts_at_zero(vm: VmPaths) -> None:
    assert log_start(vm, since=5.0, tail=3) == 0


@pytest.mark.parametrize("text,ago", [("10m", 600), ("2h", 7200), ("1h30m", 5400),
                                      ("45s", 45), ("1d", 86400), ("1.5h", 5400)])
def test_durations_count_back_from_now(text: str, ago: float) -> None:
    assert since_time(text, now=10_000_000.0) == 10_000_000.0 - ago


def test_times_and_numbers() -> None:
    assert since_time("2026-12-05T10:00:00Z") == datetime(2026, 12, 5, 10,
                                                          tzinfo=UTC).timestamp()
    naive = datetime(2026, 12, 5, 10, 0)
    assert since_time("2026-12-05T10:00") == naive.timestamp()  # local time
    assert since_time(naive) == naive.timestamp()
    assert since_time("1700000000") == since_time(1700000000) == 1.7e9
    assert since_time(timedelta(minutes=1), now=100.0) == 40.0


@pytest.mark.parametrize("bad", ["10 minutes", "yesterday", "10x", "", "-5m"])
def test_bad_times_say_what_to_give(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="duration back from now such as 10m"):
        since_time(bad)

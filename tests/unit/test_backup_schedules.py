"""Backup schedules: durations, retention rules, what is due and what was missed."""

from __future__ import annotations

import pytest

from vmkit.errors import InvalidInputError
from vmkit.services.backups.schedules import Schedule, after_run, check_keep, due, parse_every


def test_parse_every() -> None:
    assert [parse_every(t) for t in ("90s", "15m", "1h", "2d")] == [90, 900, 3600, 172800]
    for bad in ("1", "1w", "h", "1s"):
        with pytest.raises(InvalidInputError):
            parse_every(bad)


def test_keep_rules_are_borgs() -> None:
    assert check_keep({"hourly": 24, "daily": 0}) == {"hourly": 24}
    with pytest.raises(InvalidInputError, match="keep-yearly"):
        check_keep({"yearly": 1})
    with pytest.raises(InvalidInputError, match="0 or more"):
        check_keep({"daily": -1})


def test_due_counts_missed_runs_and_skips_them() -> None:
    s = Schedule("web", "usb", 60, {}, next_run=1000.0)
    assert due(s, 999.0) == (False, 0)
    assert due(s, 1000.0) == (True, 0)
    assert due(s, 1000.0 + 3 * 60 + 5) == (True, 3)  # vmkitd was down for three more
    ran = after_run(s, 1185.0, 3, "disk full")
    assert (ran.next_run, ran.runs, ran.failures, ran.missed, ran.last_ok) == (1245.0, 1, 1, 3, False)
    assert after_run(ran, 1245.0, 0, None).last_error is None

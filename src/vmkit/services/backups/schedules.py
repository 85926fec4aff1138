"""Backup schedules: when each VM's next backup is due, what a late daemon missed, and the
retention borg's ``prune`` applies after each run. The timing is pure (``due``, ``parse_every``);
``Scheduler`` runs them in vmkitd and keeps them in a file, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import InvalidInputError, NotFoundError, VmkitError
from ...paths import atomic_write

log = logging.getLogger("vmkit.backups")
KEEPS = ("last", "hourly", "daily", "weekly", "monthly")  # borg prune's --keep-* rules
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_EVERY = 5  # seconds
TICK = 1.0  # seconds between looks at the schedules


@dataclass(frozen=True)
class Schedule:
    vm: str
    repo: str
    every: int  # seconds
    keep: dict[str, int]  # rule (KEEPS) -> how many
    next_run: float
    last_run: float | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0
    missed: int = 0  # runs that fell due while no vmkitd ran, and were skipped


def parse_every(text: str) -> int:
    """"90s", "15m", "1h", "1d" in seconds."""
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not m:
        raise InvalidInputError(f"--every {text!r} is not a duration such as 30m, 1h or 1d")
    seconds = int(m.group(1)) * UNITS[m.group(2)]
    if seconds < MIN_EVERY:
        raise InvalidInputError(f"--every must be at least {MIN_EVERY}s")
    return seconds


def check_keep(keep: dict[str, int]) -> dict[str, int]:
    for rule, n in keep.items():
        if rule not in KEEPS:
            raise InvalidInputError(f"unknown retention rule keep-{rule}; use one of "
                                    + ", ".join(f"keep-{k}" for k in KEEPS))
        if n < 0:
            raise InvalidInputError(f"--keep-{rule} must be 0 or more, not {n}")
    return {r: n for r, n in keep.items() if n > 0}


def due(s: Schedule, now: float) -> tuple[bool, int]:
    """Whether ``s`` should run at ``now``, and how many runs before this one were missed
    (due while nothing ran them): those are skipped, not made up for."""
    if now < s.next_run:
        return False, 0
    return True, int((now - s.next_run) // s.every)


def after_run(s: Schedule, started: float, missed: int, error: str | None) -> Schedule:
    """``s`` once the run that ``started`` ended (``error``: why it failed)."""
    return replace(s, next_run=started + s.every, last_run=started, last_ok=error is None,
                   last_error=error, runs=s.runs + 1, failures=s.failures + (error is not None),
                   missed=s.missed + missed)


# Makes one backup of VM (arg 1) in repository (arg 2), then prunes with ``keep`` (arg 3).
Run = Callable[[str, str, dict[str, int]], Awaitable[None]]


@dataclass
class Scheduler:
    file: Path
    run: Run
    schedules: dict[str, Schedule] = field(default_factory=dict)
    _running: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.file.exists():
            self.schedules = {vm: Schedule(**s) for vm, s in json.loads(self.file.read_text()).items()}

    def _save(self) -> None:
        atomic_write(self.file, json.dumps({vm: asdict(s) for vm, s in self.schedules.items()},
                                           indent=1).encode())

    def set(self, vm: str, repo: str, every: int, keep: dict[str, int]) -> Schedule:
        old = self.schedules.get(vm)
        s = Schedule(vm, repo, every, check_keep(keep), time.time() + every)
        if old is not None:  # keep its history
            s = replace(s, last_run=old.last_run, last_ok=old.last_ok, last_error=old.last_error,
                        runs=old.runs, failures=old.failures, missed=old.missed)
        self.schedules[vm] = s
        self._save()
        return s

    def remove(self, vm: str) -> None:
        if self.schedules.pop(vm, None) is None:
            raise NotFoundError(f"VM {vm} has no backup schedule; 'vmkit backup schedule ls' "
                                "lists them")
        self._save()

    def using(self, repo: str) -> list[str]:
        return [s.vm for s in self.schedules.values() if s.repo == repo]

    async def loop(self) -> None:
        """Run each schedule when it is due, for as long as vmkitd runs."""
        while True:
            now = time.time()
            for s in list(self.schedules.values()):
                go, missed = due(s, now)
                if go and s.vm not in self._running:
                    self._running.add(s.vm)
                    asyncio.create_task(self._one(s, now, missed))
            await asyncio.sleep(TICK)

    async def _one(self, s: Schedule, started: float, missed: int) -> None:
        if missed:
            log.warning("backup schedule of %s missed %d run(s) while vmkitd was not running",
                        s.vm, missed)
        error = None
        try:
            await self.run(s.vm, s.repo, s.keep)
        except asyncio.CancelledError:
            error = "cancelled"
        except Exception as e:  # recorded for 'schedule ls' and /metrics
            error = e.message if isinstance(e, VmkitError) else f"{type(e).__name__}: {e}"
            log.warning("scheduled backup of %s failed: %s", s.vm, error)
        finally:
            self._running.discard(s.vm)
        if (now := self.schedules.get(s.vm)) is not None and now.every == s.every:
            self.schedules[s.vm] = after_run(now, started, missed, error)
            self._save()

    def metrics(self) -> list[str]:
        """The schedules' counters, in Prometheus' text format."""
        lines = []
        for name, help_text, read in (
                ("runs_total", "Scheduled backups run", lambda s: s.runs),
                ("failures_total", "Scheduled backups that failed", lambda s: s.failures),
                ("missed_total", "Scheduled backups missed while vmkitd was down",
                 lambda s: s.missed),
                ("last_ok", "1 if the last scheduled backup succeeded",
                 lambda s: int(bool(s.last_ok)))):
            lines += [f"# HELP vmkit_backup_schedule_{name} {help_text}.",
                      f"# TYPE vmkit_backup_schedule_{name} "
                      f"{'counter' if name.endswith('total') else 'gauge'}"]
            lines += [f'vmkit_backup_schedule_{name}{{vm="{s.vm}"}} {read(s)}'
                      for s in self.schedules.values()]
        return lines


def describe(s: Schedule) -> dict[str, Any]:
    return asdict(s)

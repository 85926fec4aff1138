"""The SDK's call for a VM's serial console log, and the time a read of it starts from
('vmkit logs --since T') read as docker reads it: a duration back from now (10m, 1h30m,
2d), an ISO 8601 time (in this machine's time zone unless it names one) or unix seconds."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidInputError
from .connection import Connection, seg

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
Since = float | datetime | timedelta | str


def since_time(value: Since, now: float | None = None) -> float:
    """``value`` as unix seconds: a number is one already, a timedelta or a duration string
    counts back from ``now`` (default: the current time)."""
    now = time.time() if now is None else now
    if isinstance(value, bool):
        raise InvalidInputError("since must be a time, not a bool")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, timedelta):
        return now - value.total_seconds()
    if isinstance(value, datetime):
        return value.timestamp()  # a naive datetime is local time
    text = value.strip()
    if _DURATION.fullmatch(text):
        return now - sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InvalidInputError(
            f"invalid time {value!r}: give a duration back from now such as 10m, 2h or 1h30m, "
            "an ISO time such as 2026-12-05T10:00 or 2026-12-05T10:00Z, or unix seconds"
            ) from None


class LogCalls(Connection):
    """Mixed into :class:`vmkit.Client`."""

    def logs(self, name: str, follow: bool = False, tail: int | None = None,
             since: Since | None = None) -> Iterator[bytes]:
        """The VM's serial console output (kept across restarts), in chunks: its last
        ``tail`` lines, and/or what arrived from ``since`` on (vmkitd dates the output to the
        second, so a chunk may begin up to a second early); with ``follow``, go on with new
        output until the VM stops::

            for chunk in c.logs("web", since="10m"):  # or a datetime, a timedelta, "2h"...
                print(chunk.decode(errors="replace"), end="")
        """
        params: dict[str, Any] = {"follow": follow}
        if tail is not None:
            params["tail"] = tail
        if since is not None:
            params["since"] = max(0.0, since_time(since))
        return self._stream(f"/vms/{seg(name)}/logs", params, None)

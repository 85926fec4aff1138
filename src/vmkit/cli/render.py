"""How the CLI shows things: pure formatters plus two lazily built Rich consoles.

Nothing here talks to vmkitd. Rich is imported on first use only, so commands that print
plain text (``ls -q``, ``logs``, ``exec``) never pay for it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

_consoles: dict[str, Any] = {}

STATE_STYLES = {"running": "green", "starting": "cyan", "stopping": "cyan", "paused": "yellow",
                "stopped": "dim", "crashed": "bold red"}


def out() -> Any:
    """The Rich console on stdout. Piped, it neither wraps nor colours."""
    if "out" not in _consoles:
        from rich.console import Console

        tty = sys.stdout.isatty()
        _consoles["out"] = Console(highlight=False, soft_wrap=not tty,
                                   width=None if tty else 1 << 16)
    return _consoles["out"]


def err() -> Any:
    """The Rich console on stderr: errors, progress bars, spinners."""
    if "err" not in _consoles:
        from rich.console import Console

        _consoles["err"] = Console(stderr=True, highlight=False)
    return _consoles["err"]


def error(message: str) -> None:
    """One red line on stderr: ``vmkit: <message>``."""
    from rich.markup import escape

    err().print(f"[red]vmkit: {escape(message)}[/red]", soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


# --- pure formatters -------------------------------------------------------------------

def port(p: dict[str, Any]) -> str:
    """{"host_addr": "127.0.0.1", "host_port": 8080, ...} -> '127.0.0.1:8080->80/tcp'."""
    addr = p["host_addr"]
    host = f"[{addr}]" if ":" in addr else addr
    return f"{host}:{p['host_port']}->{p['guest_port']}/{p['proto']}"


def ports(vm: dict[str, Any]) -> str:
    return ", ".join(port(p) for p in vm.get("ports") or ())


def ago(ts: float | None, now: float | None = None) -> str:
    """A past timestamp as people say it: 'just now', '5 seconds ago', '2 minutes ago'."""
    if ts is None:
        return "-"
    seconds = max(0, int((now if now is not None else time.time()) - ts))
    if seconds < 1:
        return "just now"
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400),
                       ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"  # unreachable


def when(ts: float | None) -> str:
    """'2025-01-31 14:05:09 (3 hours ago)', in local time."""
    if ts is None:
        return "-"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ts))} ({ago(ts)})"


def size(n: int) -> str:
    """Bytes for people: 1.5G, 300M, 12K."""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 10 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"  # unreachable


def state(vm: dict[str, Any]) -> str:
    """A VM's state as Rich markup, coloured."""
    s = vm["state"]
    style = STATE_STYLES.get(s)
    return f"[{style}]{s}[/{style}]" if style else s


# --- tables ----------------------------------------------------------------------------

def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A docker-style table on stdout: bold headers, no borders, two spaces between columns.
    Cells may hold Rich markup; other text must be escaped by the caller (see ``cell``)."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False,
              header_style="bold")
    for h in headers:
        t.add_column(h, no_wrap=True, overflow="ellipsis")
    for row in rows:
        t.add_row(*row)
    console = out()
    if console.is_terminal:
        console.print(t)
        return
    with console.capture() as captured:  # piped: no trailing blanks for grep, awk and cut
        console.print(t)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def cell(text: object) -> str:
    """Escape plain text for a table cell (names may not hold '[', but be safe)."""
    s = str(text)
    if "[" not in s:
        return s
    from rich.markup import escape

    return escape(s)


def fields(pairs: Iterable[tuple[str, str]]) -> None:
    """'Key:  value' lines, keys aligned, for inspect and info."""
    pairs = list(pairs)
    width = max(len(k) for k, _ in pairs) + 2
    console = out()
    for key, value in pairs:
        console.print(f"[bold]{key + ':':<{width}}[/bold]{value}")

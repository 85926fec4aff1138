"""How the CLI shows things: pure formatters, plain-text tables, and a lazily built Rich console
on stderr for errors, spinners and progress bars.

Tables and key/value views are plain text with ANSI colour on a terminal: importing and
rendering with Rich would cost ~30-60 ms, a third of ``vmkit ls``. Colour is off when stdout
is not a terminal, when NO_COLOR is set or when TERM is dumb.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Protocol, TypeVar

    class Record(Protocol):
        """An object of the API as the SDK returns it, read by key: a dict, or a model of
        ``vmkit.models`` (which answers dict-style reads too)."""
        def __getitem__(self, key: str, /) -> Any: ...
        def get(self, key: str, default: Any = None, /) -> Any: ...

    R = TypeVar("R", bound=Record)

# A table cell: plain text, or (text, style) with a style name from _SGR.
Cell = str | tuple[str, str]

_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36",
        "bold red": "1;31"}
STATE_STYLES = {"running": "green", "starting": "cyan", "stopping": "cyan", "paused": "yellow",
                "stopped": "dim", "crashed": "bold red"}
_err_console: list[Any] = []


def err() -> Any:
    """The Rich console on stderr, for errors, progress bars and spinners."""
    if not _err_console:
        from rich.console import Console

        _err_console.append(Console(stderr=True, highlight=False))
    return _err_console[0]


def busy(message: str) -> Any:
    """A spinner on stderr while something runs, for people: scripts (stderr not a terminal)
    get nothing, and skip importing Rich."""
    if not sys.stderr.isatty():
        import contextlib

        return contextlib.nullcontext()
    return err().status(message, spinner="dots")


def error(message: str) -> None:
    """One red line on stderr: ``vmkit: <message>``."""
    from rich.markup import escape

    err().print(f"[red]vmkit: {escape(message)}[/red]", soft_wrap=True)


def print_json(data: Any) -> None:
    """``data`` (SDK models, dicts, lists of them) as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=_as_json) + "\n")
    sys.stdout.flush()


def _as_json(value: Any) -> Any:
    """An SDK model as the JSON object the API sent (json.dumps calls this for them)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- pure formatters -------------------------------------------------------------------

def port(p: Record) -> str:
    """{"host_addr": "127.0.0.1", "host_port": 8080, ...} -> '127.0.0.1:8080->80/tcp'."""
    addr = p["host_addr"]
    host = f"[{addr}]" if ":" in addr else addr
    return f"{host}:{p['host_port']}->{p['guest_port']}/{p['proto']}"


def image(vm: Record) -> str:
    """A VM's image, or for a blank disk the CD it installs from."""
    return vm["image"] or f"(blank, cd {vm.get('cdrom') or '-'})"


def address(vm: Record) -> str:
    """A VM's first IPv4 address (else its first), for a table: '-' when none is known."""
    ips = vm.get("ips") or []
    return next((ip for ip in ips if ":" not in ip), ips[0] if ips else "-")


def ports(vm: Record) -> str:
    return ", ".join(port(p) for p in vm.get("ports") or ())


def ago(ts: float | None, now: float | None = None) -> str:
    """A past timestamp as people say it: 'just now', '5 seconds ago', '2 minutes ago'."""
    if ts is None:
        return "-"
    seconds = max(0, int((now if now is not None else time.time()) - ts))
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400),
                       ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def when(ts: float | None) -> str:
    """'2025-01-31 14:05:09 (3 hours ago)', in local time."""
    if ts is None:
        return "-"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ts))} ({ago(ts)})"


def size(n: int) -> str:
    """Bytes for people: 1.5G, 300M, 12K."""
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" or value >= 10 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


def state(vm: Record) -> Cell:
    """A VM's state, coloured by what it means."""
    s = vm["state"]
    return (s, STATE_STYLES[s]) if s in STATE_STYLES else s


# --- plain-text output -----------------------------------------------------------------

def color_enabled(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return (stream.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def _paint(text: str, style: str | None, color: bool) -> str:
    if not color or not style or not text:
        return text
    return f"\x1b[{_SGR[style]}m{text}\x1b[0m"


def tree(items: Sequence[R]) -> list[tuple[int, R]]:
    """Items with ``name`` and ``parent`` (a name) in depth-first order, with their depth."""
    children: dict[str | None, list[R]] = {}
    names = {i["name"] for i in items}
    for item in items:
        children.setdefault(item["parent"] if item["parent"] in names else None, []).append(item)
    out: list[tuple[int, R]] = []

    def walk(parent: str | None, depth: int) -> None:
        for item in children.get(parent, []):
            out.append((depth, item))
            walk(item["name"], depth + 1)

    walk(None, 0)
    return out


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """A docker-style table on stdout: headers, columns two spaces apart, no borders, no
    trailing blanks."""
    color = color_enabled()
    cells = [[c if isinstance(c, tuple) else (str(c), "") for c in row] for row in rows]
    widths = [max([len(h), *(len(row[i][0]) for row in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(_paint(h.ljust(w) if i < len(headers) - 1 else h, "bold", color)
                       for i, (h, w) in enumerate(zip(headers, widths, strict=True))).rstrip()]
    for row in cells:
        parts = []
        for i, ((text, style), w) in enumerate(zip(row, widths, strict=True)):
            pad = " " * (w - len(text)) if i < len(row) - 1 else ""
            parts.append(_paint(text, style, color) + pad)
        lines.append("  ".join(parts).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def fields(pairs: Iterable[tuple[str, Cell]]) -> None:
    """'Key:  value' lines, values aligned, for inspect and info."""
    color = color_enabled()
    styled = [(k, v if isinstance(v, tuple) else (v, "")) for k, v in pairs]
    width = max(len(k) for k, _ in styled) + 2
    sys.stdout.write("".join(
        f"{_paint(key + ':', 'bold', color)}{' ' * (width - len(key) - 1)}"
        f"{_paint(text, style, color)}\n" for key, (text, style) in styled))
    sys.stdout.flush()


# --- inspect -f ------------------------------------------------------------------------


def template(fmt: str, data: Any) -> str:
    """docker's ``inspect -f`` for vmkit's JSON: each ``{{.a.b}}`` is replaced by that field
    (keys of the API's JSON, list items by number: ``{{.ports.0.host_port}}``), ``{{json
    .a}}`` by it as JSON, ``{{.}}`` by everything. Text, numbers and null print as they
    are (null as nothing), true/false in lower case, lists and objects as JSON."""
    import re

    from ..errors import InvalidInputError

    def one(m: re.Match[str]) -> str:
        as_json, path = bool(m.group(1)), m.group(2)
        value = data
        for key in filter(None, path.split(".")):
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            elif isinstance(value, list):
                raise InvalidInputError(f"no item {key!r} in {{{{.{path}}}}}: the list has "
                                        f"{len(value)} item{'s' * (len(value) != 1)}")
            else:
                known = ", ".join(sorted(value)) if isinstance(value, dict) else "none"
                raise InvalidInputError(f"no field {key!r} in {{{{.{path}}}}}; fields there: "
                                        f"{known}")
        if as_json or isinstance(value, (dict, list)):
            return json.dumps(value, default=_as_json)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    pattern = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")
    if "{{" in pattern.sub("", fmt):
        raise InvalidInputError(f"cannot read the format {fmt!r}: write fields as {{{{.name}}}}"
                                ", {{.ports.0.host_port}} or {{json .ports}}")
    return pattern.sub(one, fmt)

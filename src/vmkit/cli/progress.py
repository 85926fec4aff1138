"""Progress bars on stderr for long requests: ``follow`` an operation of vmkitd (image builds
and imports, migrations) to its end, or show the bytes of a transfer (``transfer_progress``).
Rich is imported only when a bar is shown.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client import Client
    from .render import Record


# Operations Ctrl-C calls off (vmkitd removes what they made so far); others go on.
CANCELLABLE = ("image-build", "image-import", "run", "backup", "backup-restore", "backup-verify")
CANCELLED = {"run": "{target} was not made", "backup-verify": "the backup was not changed",
             "backup-restore": "VM {target} was not made or rolled back"}


def follow(c: Client, op: Record, title: str, transient: bool = False) -> Record:
    """Follow an operation to its end with a progress bar on stderr; raise if it failed.
    ``transient``: the bar goes when done, and scripts (stderr not a terminal) get none.
    Ctrl-C cancels an image build or import, or a run (vmkitd removes what it made)."""
    if transient and not sys.stderr.isatty():
        return _wait(c, op, None)
    from rich.markup import escape
    from rich.progress import (
        BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn)

    from . import render

    columns = (SpinnerColumn(), TextColumn(title), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=render.err(), transient=transient) as progress:
        task = progress.add_task(escape(op.get("message") or "starting"), total=1.0)

        def on_progress(op: Record) -> None:
            progress.update(task, completed=op.get("progress") or 0.0,
                            description=escape(op.get("message") or ""))

        return _wait(c, op, on_progress)


def _wait(c: Client, op: Record, on_progress: Callable[[Record], None] | None) -> Record:
    from ..errors import VmkitError

    try:
        return c.wait_operation(op["id"], on_progress, interval=0.05)
    except KeyboardInterrupt:
        if op["kind"] not in CANCELLABLE:
            raise
        sys.stderr.write("\rcancelling...\n")
        c.cancel_operation(op["id"])
        with contextlib.suppress(VmkitError):
            c.wait_operation(op["id"], interval=0.2)
    said = CANCELLED.get(op["kind"], "nothing was stored").format(target=op["target"])
    sys.stderr.write(f"Cancelled: {said}.\n")
    raise KeyboardInterrupt


@contextlib.contextmanager
def transfer_progress(title: str, before: str = "", after: str = ""
                      ) -> Iterator[Callable[[int, int], None]]:
    """A bytes progress bar on stderr; the callback it yields takes (done, total). ``before``
    the first bytes and ``after`` the last, they say what vmkitd is doing."""
    from rich.markup import escape
    from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn, TransferSpeedColumn)

    from . import render

    columns = (SpinnerColumn(), TextColumn(escape(title)), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=render.err()) as progress:
        task = progress.add_task(before, total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None,
                            description="" if done < total else after)

        yield on_progress

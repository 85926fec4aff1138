"""When each part of a VM's serial log arrived, for 'vmkit logs --since T'. QEMU writes the
log itself and puts no times in it, so vmkitd looks once a second at how long each running
VM's log is and, when it grew, appends "OFFSET UNIX-TIME" to serial.times beside it: one
stat per VM a second, one short line a second at most while a guest prints. Both files live
in the VM's directory and go with it, so the marks outlive vmkitd restarts; output written
while no vmkitd ran is dated when the next one saw it (later than it came, never earlier).
A read from T starts at the line holding the last offset marked before T: it may show up
to a second more than asked, never less."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import BinaryIO

from ..paths import VmPaths, open_nofollow
from .registry import Registry

INTERVAL = 1.0  # seconds between looks: the precision of --since
BLOCK = 65536  # bytes read at a time when reading a file from its end


class LogTimes:
    """Marks the growth of every running VM's serial log (``run`` in the background)."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self._sizes: dict[str, int] = {}  # VM -> its log's size at its last mark

    async def run(self) -> None:
        while True:
            self.tick(time.time())
            await asyncio.sleep(INTERVAL)

    def tick(self, now: float) -> None:
        """Mark each running VM's log that grew; a VM that stopped since the last tick gets
        its last mark (QEMU has written all it will), then is forgotten."""
        for name in set(self.reg.machines) | set(self._sizes):
            self._mark(name, now)
            if name not in self.reg.machines:
                self._sizes.pop(name, None)

    def _mark(self, name: str, now: float) -> None:
        vmp = self.reg.paths.vm(name)
        try:
            size = os.stat(vmp.serial_log).st_size
            known = self._sizes.get(name)
            if known is None:  # first seen by this vmkitd: go on from the marks on disk
                known = last_mark(vmp)
            if size != known:
                with open_nofollow(vmp.serial_times, append=True) as f:
                    if size < known:  # a new log (a restore or an arrival replaced it)
                        f.truncate(0)
                    f.write(b"%d %.3f\n" % (size, now))
            self._sizes[name] = size
        except OSError:  # no log yet, or the VM went with its directory
            self._sizes.pop(name, None)


def last_mark(vmp: VmPaths) -> int:
    """The log offset of the last mark in serial.times (0 if none)."""
    with contextlib.suppress(OSError), open_nofollow(vmp.serial_times) as f:
        for _, line in _lines_backwards(f, f.seek(0, os.SEEK_END)):
            if (mark := _parse(line)) is not None:
                return mark[0]
    return 0


def log_start(vmp: VmPaths, since: float | None = None, tail: int | None = None) -> int:
    """Where a read of the serial log begins: at the line that holds the last offset marked
    before unix time ``since``, and at most ``tail`` lines before the end (0: at the end)."""
    start = 0
    with contextlib.suppress(OSError), open_nofollow(vmp.serial_log) as log:
        size = log.seek(0, os.SEEK_END)
        if since is not None:
            start = max(start, _line_at(log, min(_offset_before(vmp, since), size)))
        if tail is not None:
            start = max(start, _tail_start(log, size, tail))
    return start


def _offset_before(vmp: VmPaths, since: float) -> int:
    with contextlib.suppress(OSError), open_nofollow(vmp.serial_times) as f:
        for _, line in _lines_backwards(f, f.seek(0, os.SEEK_END)):
            if (mark := _parse(line)) is not None and mark[1] < since:
                return mark[0]
    return 0


def _line_at(log: BinaryIO, offset: int) -> int:
    """The offset at which the line holding byte ``offset`` begins."""
    return next(_lines_backwards(log, offset))[0]


def _tail_start(log: BinaryIO, size: int, lines: int) -> int:
    """The offset of the last ``lines`` lines (an unfinished last line counts as one)."""
    if lines <= 0:
        return size
    found = 0
    for start, line in _lines_backwards(log, size):
        if start == size and not line:  # after the last newline: no line
            continue
        found += 1
        if found == lines:
            return start
    return 0


def _lines_backwards(f: BinaryIO, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for every line of ``f`` that begins before ``end`` (and for an empty
    one at ``end`` after a newline), the last first, without newlines, cut at ``end``."""
    pos, head = end, b""  # head: the start of the earliest line seen, which may go on before
    while pos > 0:
        start = max(0, pos - BLOCK)
        f.seek(start)
        parts = (f.read(pos - start) + head).split(b"\n")
        head, at, found = parts[0], start + len(parts[0]) + 1, []
        for part in parts[1:]:
            found.append((at, part))
            at += len(part) + 1
        yield from reversed(found)
        pos = start
    yield 0, head


def _parse(line: bytes) -> tuple[int, float] | None:
    """A mark "OFFSET TIME", or None for anything else (the file is in the VM's directory,
    which a jailed QEMU's user owns: it is read as untrusted)."""
    try:
        offset, when = line.split()
        return int(offset), float(when)
    except ValueError:
        return None

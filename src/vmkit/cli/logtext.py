"""A serial console log as text for people and for grep: without the terminal's escape
sequences (colours, cursor moves, the shell's cursor-position queries) and carriage
returns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), other ESC sequences (ESC,
# intermediate bytes, a final byte: charset choices such as ESC ( B), and the C0 controls a
# log has no use for (all but tab and newline; CR goes: lines end in "\n").
_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                      rb"|\x1b[ -/]*[0-~]|[\x00-\x08\x0b-\x1f\x7f]")
_PARTIAL = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[ -/]*)\Z")  # cut at a chunk's end
MAX_SEQUENCE = 4096  # an unfinished sequence longer than this is no sequence: let it out


class Cleaner:
    """Strips escape sequences from a stream of chunks; a sequence split between two chunks
    is held back until its end arrives."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        cut = _PARTIAL.search(data)
        if cut and len(data) - cut.start() <= MAX_SEQUENCE:
            data, self._held = data[:cut.start()], data[cut.start():]
        else:
            self._held = b""
        return _ESCAPES.sub(b"", data)

    def end(self) -> bytes:
        held, self._held = self._held, b""
        return _ESCAPES.sub(b"", held)


def clean(chunks: Iterable[bytes]) -> Iterator[bytes]:
    cleaner = Cleaner()
    for chunk in chunks:
        if out := cleaner.feed(chunk):
            yield out
    if out := cleaner.end():
        yield out

"""Changes to the state store, fanned out to whoever listens (the dashboard's live list).

The Store calls ``publish(kind, name)`` after each write that changes a VM ("vm", its name) or
a VM's snapshots ("snapshots", the VM's name). Each subscriber has its own queue; a slow one
loses nothing but is told to re-read everything when its queue overflows.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

Change = tuple[str, str]  # (kind, name)
OVERFLOW: Change = ("overflow", "")  # too many changes queued: re-read the whole list
CLOSED: Change = ("closed", "")  # the daemon is stopping: end the stream
QUEUE_SIZE = 1000


class Changes:
    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Change]]] = set()
        self._lock = threading.Lock()  # the Store may be written from worker threads

    def publish(self, kind: str, name: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                _put(queue, (kind, name))
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody listens
                    loop.call_soon_threadsafe(_put, queue, (kind, name))

    def close(self) -> None:
        """The daemon is stopping: every subscriber's stream ends."""
        self.publish(*CLOSED)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Change]]:
        """A queue of changes from now on, for as long as the ``with`` block lasts."""
        entry = (asyncio.get_running_loop(), asyncio.Queue[Change](QUEUE_SIZE))
        with self._lock:
            self._subscribers.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._subscribers.discard(entry)


async def bursts(queue: asyncio.Queue[Change], idle: float) -> AsyncIterator[list[Change]]:
    """What ``queue`` receives, a burst at a time: all that is queued when the first change
    comes, each change once (a VM that changed twice is looked at once, as it is now). An
    empty burst after ``idle`` seconds without any; ends at CLOSED."""
    while True:
        try:
            first = await asyncio.wait_for(queue.get(), idle)
        except TimeoutError:
            yield []
            continue
        changes = [first]
        while not queue.empty():
            changes.append(queue.get_nowait())
        burst: list[Change] = []
        for change in dict.fromkeys(changes):
            if change[0] == CLOSED[0]:  # the daemon stops: what came before, then the end
                if burst:
                    yield burst
                return
            burst.append(change)
        yield burst


def _put(queue: asyncio.Queue[Change], change: Change) -> None:
    try:
        queue.put_nowait(change)
    except asyncio.QueueFull:
        while not queue.empty():  # drop the backlog: one OVERFLOW says "re-read it all"
            queue.get_nowait()
        queue.put_nowait(OVERFLOW)

"""A digest of a paused guest's memory and CPU state, read through QEMU, to prove that a live
migration delivered the guest whole.

QEMU writes the guest's memory as an ELF core (``dump-guest-memory``, no paging walk) into a
pipe whose write end it receives over QMP (SCM_RIGHTS); vmkitd hashes what comes out, so no
copy of the memory touches a disk. The source after a completed migration and the destination
before its first ``cont`` hold the same guest: their digests are equal unless the migration
lost or damaged a page (which QEMU 7.2 under TCG does now and then; FACTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from typing import TYPE_CHECKING

from ..errors import QmpError

if TYPE_CHECKING:
    from .process import Machine

FD_NAME = "vmkit-memory-digest"


async def digest(machine: Machine) -> str:
    """BLAKE2b of the guest's memory and CPU state; the guest must be paused."""
    read_end, write_end = os.pipe()
    reader = asyncio.get_running_loop().run_in_executor(None, _hash_pipe, read_end)
    try:
        try:
            machine.qmp.send_fd_scm(write_end)
        finally:
            os.close(write_end)  # QEMU holds its own copy now; EOF comes when it closes it
        await machine.execute("getfd", {"fdname": FD_NAME})
        await machine.execute("dump-guest-memory", {"paging": False,
                                                    "protocol": f"fd:{FD_NAME}"})
    except BaseException:
        # QEMU may still hold the pipe's write end: close it there, or the reader never ends.
        with contextlib.suppress(QmpError):
            await machine.execute("closefd", {"fdname": FD_NAME})
        raise
    try:
        return await reader
    except OSError as e:
        raise QmpError(f"reading the guest's memory from QEMU failed: {e}") from e


def _hash_pipe(fd: int) -> str:
    h = hashlib.blake2b(digest_size=32)
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

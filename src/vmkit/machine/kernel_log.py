"""What a guest's console says about its kernel's health: panics, oopses and memory corruption.

A migration that corrupts guest memory (QEMU 7.2 under TCG does, now and then) shows itself in
the guest kernel's own words, seconds or minutes later. These are the words.
"""

from __future__ import annotations

import re

# Lines a healthy kernel never prints. Each is a kernel message prefix (printk of an oops,
# a panic, a list or page-table check). A user program's segfault is left out: programs crash
# on their own, and that is no proof of a corrupt guest.
FAILURE = re.compile(
    r"Kernel panic - not syncing|BUG: |Oops: |general protection fault|"
    r"list_(?:add|del) corruption|Bad page (?:map|state)|stack-protector: |"
    r"kernel tried to execute NX-protected page|invalid opcode: |"
    r"Unable to handle kernel|unable to handle page fault|double fault|Fatal exception")


def failure(console: str) -> str | None:
    """The first line of ``console`` that shows a failing kernel, or None."""
    m = FAILURE.search(console)
    if m is None:
        return None
    start = console.rfind("\n", 0, m.start()) + 1
    end = console.find("\n", m.end())
    return console[start:end if end >= 0 else len(console)].strip()[:300]

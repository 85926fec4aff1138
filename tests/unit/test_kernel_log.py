"""kernel_log.py: the guest kernel's own words for a failure, found in its console."""

from __future__ import annotations

import pytest

from vmkit.machine.kernel_log import failure


@pytest.mark.parametrize("line", [
    "[   12.345678] Kernel panic - not syncing: Fatal exception in interrupt",
    "[    3.1] list_del corruption. prev->next should be ffff8880, but was dead000000000122",
    "[    7.0] BUG: Bad page map in process make  pte:8000000004a8c025 pmd:04a6b067",
    "[    9.2] kernel tried to execute NX-protected page - exploit attempt? (uid: 0)",
    "[   10.1] stack-protector: Kernel stack is corrupted in: __schedule+0x9c0/0x9d0",
    "[    2.2] general protection fault, probably for non-canonical address 0xdead: 0000 [#1]",
    "[    4.4] Oops: 0000 [#1] PREEMPT SMP NOPTI",
])
def test_kernel_failures_are_found(line: str) -> None:
    console = f"login: root\n# make -j2\n{line}\n[   12.4] CPU: 1 PID: 77 Comm: cc1\n"
    assert failure(console) == line


@pytest.mark.parametrize("console", [
    "",
    "Welcome to vmkit\n# echo BUG\nBUG\n",  # a user's own words
    "[    1.0] virtio_blk virtio0: [vda] 2097152 512-byte logical blocks\n",
    "[   30.0] cc1[812]: segfault at 0 ip 000055 sp 00007ff error 4 in cc1[55+1000]\n",
])
def test_healthy_consoles(console: str) -> None:
    assert failure(console) is None

"""Reading a backup out of borg into a sparse file: zero blocks become holes."""

from __future__ import annotations

import threading

import pytest

from vmkit.services.backups.raw import BLOCK, Stopped, sparse_copy


def test_sparse_copy_keeps_data_and_length_and_stops_when_told(tmp_path) -> None:
    blocks = [bytes(BLOCK), b"x" * BLOCK, bytes(100)]
    seen: list[int] = []
    with open(tmp_path / "img", "wb") as out:
        assert sparse_copy(blocks, out, threading.Event(), seen.append) == 2 * BLOCK + 100
    data = (tmp_path / "img").read_bytes()
    assert data == bytes(BLOCK) + b"x" * BLOCK + bytes(100) and seen[-1] == len(data)
    stop = threading.Event()
    stop.set()
    with open(tmp_path / "img2", "wb") as out, pytest.raises(Stopped):
        sparse_copy(blocks, out, stop, seen.append)

"""The image a backup hands borg: changed extents written over the previous image."""

from __future__ import annotations

import io
import threading

import pytest

from vmkit.services.backups.raw import BLOCK, Extent, Stopped, extents, patch, sparse_copy


def test_extents_keep_only_what_the_delta_holds() -> None:
    found = extents([
        {"start": 0, "length": 65536, "present": True, "data": True, "zero": False, "offset": 327680},
        {"start": 65536, "length": 983040, "present": False, "data": False, "zero": True},
        {"start": 1048576, "length": 65536, "present": True, "data": False, "zero": True}])
    assert found == [Extent(0, 65536, 327680), Extent(1048576, 65536, None)]


def test_patch_writes_data_and_zeros_in_place() -> None:
    image = io.BytesIO(b"a" * 8 + b"b" * 8 + b"c" * 8)
    delta = io.BytesIO(b"....XXXXXXXXXX")
    # guest bytes 6..16 come from the delta at offset 4; 20..22 are zeros
    patch(image, delta, [Extent(6, 10, 4), Extent(20, 2, None)])
    assert image.getvalue() == b"aaaaaaXX" + b"XXXXXXXX" + b"cccc\0\0cc"


def test_patch_refuses_a_short_delta() -> None:
    with pytest.raises(Exception, match="shorter than its map"):
        patch(io.BytesIO(bytes(16)), io.BytesIO(b"ab"), [Extent(0, 4, 0)])


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

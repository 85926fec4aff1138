"""store.py: the SQLite state database, on a fresh file per test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vmkit.spec import make_spec
from vmkit.state import VmState
from vmkit.store import ImageRecord, Store

MAC = "52:54:00:aa:bb:cc"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


# --- VMs -----------------------------------------------------------------------------------

def test_add_and_get_vm(store: Store) -> None:
    spec = make_spec("web", cpus=2, memory="1G", disk="4G", ports=["8080:80", "[::1]:53:53/udp"])
    rec = store.add_vm(spec, MAC)
    assert (rec.name, rec.state, rec.mac, rec.pid, rec.reason, rec.started) == (
        "web", VmState.STOPPED, MAC, None, "", None)
    got = store.vm("web")
    assert got == rec
    assert got is not None and got.spec == spec  # the spec survives JSON in the database


def test_missing_vm(store: Store) -> None:
    assert store.vm("nope") is None
    assert store.vms() == []


def test_duplicate_name(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC)
    with pytest.raises(sqlite3.IntegrityError):
        store.add_vm(make_spec("web", cpus=4), "52:54:00:00:00:01")
    rec = store.vm("web")
    assert rec is not None and rec.spec.cpus == 1 and rec.mac == MAC  # the first one is kept
    store.add_vm(make_spec("db"), MAC)  # the failed insert left no transaction open


def test_vms_in_creation_order(store: Store) -> None:
    for name in ("c", "a", "b"):
        store.add_vm(make_spec(name), MAC)
    assert [v.name for v in store.vms()] == ["c", "a", "b"]


def test_set_vm_state(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC)
    store.set_vm_state("web", VmState.RUNNING, pid=4242, started=1234.5)
    rec = store.vm("web")
    assert rec is not None
    assert (rec.state, rec.pid, rec.started, rec.reason) == (VmState.RUNNING, 4242, 1234.5, "")

    store.set_vm_state("web", VmState.CRASHED, reason="qemu exited with status 1")
    rec = store.vm("web")
    assert rec is not None
    assert (rec.state, rec.pid, rec.started, rec.reason) == (
        VmState.CRASHED, None, None, "qemu exited with status 1")


def test_set_state_of_one_vm_only(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC)
    store.add_vm(make_spec("db"), MAC)
    store.set_vm_state("web", VmState.RUNNING, pid=1)
    assert {v.name: v.state for v in store.vms()} == {"web": VmState.RUNNING,
                                                       "db": VmState.STOPPED}


def test_remove_vm(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC)
    store.add_vm(make_spec("db"), MAC)
    store.remove_vm("web")
    assert store.vm("web") is None
    assert [v.name for v in store.vms()] == ["db"]
    store.remove_vm("web")  # removing twice is harmless
    store.add_vm(make_spec("web"), MAC)  # and the name is free again


def test_persists_across_connections(tmp_path: Path) -> None:
    Store(tmp_path / "state.db").add_vm(make_spec("web", memory="512M"), MAC)
    rec = Store(tmp_path / "state.db").vm("web")
    assert rec is not None and rec.spec.memory_mib == 512


# --- images --------------------------------------------------------------------------------

def image(name: str = "tiny", digest: str = "ab" * 32) -> ImageRecord:
    return ImageRecord(name, digest, "tiny", 123456, {"rootfs_bytes": 1 << 30}, 1700000000.0)


def test_images(store: Store) -> None:
    assert store.images() == [] and store.image("tiny") is None
    store.put_image(image("tiny"))
    store.put_image(image("alpha", "cd" * 32))
    assert store.image("tiny") == image("tiny")
    assert [i.name for i in store.images()] == ["alpha", "tiny"]  # by name
    assert store.image("tiny").meta == {"rootfs_bytes": 1 << 30}  # type: ignore[union-attr]


def test_put_image_replaces(store: Store) -> None:
    store.put_image(image("tiny", "ab" * 32))
    store.put_image(image("tiny", "ef" * 32))
    assert [i.digest for i in store.images()] == ["ef" * 32]


def test_remove_image(store: Store) -> None:
    store.put_image(image("tiny"))
    store.put_image(image("alpha"))
    store.remove_image("tiny")
    assert store.image("tiny") is None
    assert [i.name for i in store.images()] == ["alpha"]


# --- operations ----------------------------------------------------------------------------

def test_add_operation(store: Store) -> None:
    op = store.add_operation("image-build", "tiny")
    assert (op.kind, op.target, op.state, op.progress, op.message, op.error) == (
        "image-build", "tiny", "running", 0.0, "", None)
    assert store.operation(op.id) == op
    assert store.add_operation("image-build", "tiny").id != op.id


def test_missing_operation(store: Store) -> None:
    assert store.operation("nope") is None


def test_update_operation(store: Store) -> None:
    op = store.add_operation("image-build", "tiny")
    store.update_operation(op.id, progress=0.5, message="fetching packages")
    got = store.operation(op.id)
    assert got is not None
    assert (got.state, got.progress, got.message, got.error) == (
        "running", 0.5, "fetching packages", None)
    assert got.updated >= got.created == op.created

    store.update_operation(op.id, state="failed", progress=0.5, message="fetching packages",
                           error="no network")
    got = store.operation(op.id)
    assert got is not None and (got.state, got.error) == ("failed", "no network")


def test_fail_interrupted_operations(store: Store) -> None:
    running = store.add_operation("image-build", "tiny")
    done = store.add_operation("image-build", "other")
    store.update_operation(done.id, state="succeeded", progress=1.0, message="done")
    failed = store.add_operation("image-build", "third")
    store.update_operation(failed.id, state="failed", progress=0.1, message="", error="boom")

    store.fail_interrupted_operations()

    got = store.operation(running.id)
    assert got is not None and got.state == "failed"
    assert got.error is not None and "interrupted" in got.error
    assert store.operation(done.id).state == "succeeded"  # type: ignore[union-attr]
    assert store.operation(failed.id).error == "boom"  # type: ignore[union-attr]

"""store.py: the SQLite state database, on a fresh file per test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vmkit.spec import make_spec
from vmkit.state import VmState
from vmkit.store import ImageRecord, SnapshotRecord, Store

MAC = "52:54:00:aa:bb:cc"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


# --- VMs -----------------------------------------------------------------------------------

def test_add_and_get_vm(store: Store) -> None:
    spec = make_spec("web", cpus=2, memory="1G", disk="4G", ports=["8080:80", "[::1]:53:53/udp"])
    rec = store.add_vm(spec, MAC, "layer")
    assert (rec.name, rec.state, rec.mac, rec.pid, rec.reason, rec.started) == (
        "web", VmState.STOPPED, MAC, None, "", None)
    got = store.vm("web")
    assert got == rec
    assert got is not None and got.spec == spec  # the spec survives JSON in the database


def test_missing_vm(store: Store) -> None:
    assert store.vm("nope") is None
    assert store.vms() == []


def test_duplicate_name(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC, "layer")
    with pytest.raises(sqlite3.IntegrityError):
        store.add_vm(make_spec("web", cpus=4), "52:54:00:00:00:01", "layer")
    rec = store.vm("web")
    assert rec is not None and rec.spec.cpus == 1 and rec.mac == MAC  # the first one is kept
    store.add_vm(make_spec("db"), MAC, "layer")  # the failed insert left no transaction open


def test_vms_in_creation_order(store: Store) -> None:
    for name in ("c", "a", "b"):
        store.add_vm(make_spec(name), MAC, "layer")
    assert [v.name for v in store.vms()] == ["c", "a", "b"]


def test_set_vm_state(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC, "layer")
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
    store.add_vm(make_spec("web"), MAC, "layer")
    store.add_vm(make_spec("db"), MAC, "layer")
    store.set_vm_state("web", VmState.RUNNING, pid=1)
    assert {v.name: v.state for v in store.vms()} == {"web": VmState.RUNNING,
                                                       "db": VmState.STOPPED}


def test_remove_vm(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC, "layer")
    store.add_vm(make_spec("db"), MAC, "layer")
    store.remove_vm("web")
    assert store.vm("web") is None
    assert [v.name for v in store.vms()] == ["db"]
    store.remove_vm("web")  # removing twice is harmless
    store.add_vm(make_spec("web"), MAC, "layer")  # and the name is free again


def test_a_vm_is_creating_until_its_create_has_finished(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    assert store.add_vm(make_spec("web"), MAC, "layer", creating=True).creating
    assert store.add_vm(make_spec("db"), MAC, "layer2").creating is False
    assert Store(tmp_path / "state.db").vm("web").creating  # durable: a new vmkitd sees it
    store.vm_created("web")
    assert [v.creating for v in store.vms()] == [False, False]


def test_persists_across_connections(tmp_path: Path) -> None:
    Store(tmp_path / "state.db").add_vm(make_spec("web", memory="512M"), MAC, "layer")
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


# --- snapshots and templates ---------------------------------------------------------------

def snap(id: str, vm: str | None, name: str, parent: str | None = None) -> SnapshotRecord:
    return SnapshotRecord(id, vm, name, parent, 1.0, True, False, f"layer-{id}",
                          make_spec(vm or "gone"))


def test_a_snapshot_becomes_its_vms_head(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC, "layer")
    store.add_snapshot(snap("a", "web", "s1"))
    assert store.vm("web").head == "a"
    assert store.snapshot("a") == snap("a", "web", "s1")  # the spec survives JSON
    store.add_snapshot(snap("b", "web", "s2", parent="a"))
    assert [s.name for s in store.snapshots("web")] == ["s1", "s2"]
    assert store.vm("web").head == "b"


def test_snapshot_names_are_unique_per_vm(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC, "layer")
    store.add_vm(make_spec("db"), MAC, "layer2")
    store.add_snapshot(snap("a", "web", "s1"))
    store.add_snapshot(snap("b", "db", "s1"))  # another VM may use the name
    with pytest.raises(sqlite3.IntegrityError):
        store.add_snapshot(snap("c", "web", "s1"))
    assert store.vm("web").head == "a"  # the failed insert changed nothing


def test_removing_a_snapshot_hands_its_children_to_its_parent(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC, "layer")
    store.add_snapshot(snap("a", "web", "s1"))
    store.add_snapshot(snap("b", "web", "s2", parent="a"))
    store.add_snapshot(snap("c", "web", "s3", parent="b"))
    store.set_vm_disk("web", "layer", "b")
    store.remove_snapshot("b")
    assert store.snapshot("c").parent == "a"
    assert store.vm("web").head == "a"


def test_removing_a_vm_keeps_only_the_snapshots_templates_use(store: Store) -> None:
    store.add_vm(make_spec("web"), MAC, "layer")
    store.add_snapshot(snap("a", "web", "s1"))
    store.add_snapshot(snap("b", "web", "s2"))
    store.add_template("base", "b")
    store.remove_vm("web")
    assert store.snapshot("a") is None
    kept = store.snapshot("b")
    assert kept is not None and kept.vm is None
    store.remove_template("base")  # and its ownerless snapshot goes with it
    assert store.snapshot("b") is None


def test_template_names_are_unique(store: Store) -> None:
    store.add_template("base", "a")
    with pytest.raises(sqlite3.IntegrityError):
        store.add_template("base", "b")
    assert [t.snapshot for t in store.templates()] == ["a"]


def test_a_database_from_before_snapshots_gets_the_new_columns(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript("""CREATE TABLE vms (name TEXT PRIMARY KEY, spec TEXT NOT NULL,
        state TEXT NOT NULL, mac TEXT NOT NULL, pid INTEGER, reason TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL, started REAL);""")
    db.execute("INSERT INTO vms (name, spec, state, mac, created) VALUES (?, ?, ?, ?, ?)",
               ("old", '{"name": "old"}', "stopped", MAC, 1.0))
    db.commit()
    db.close()
    rec = Store(tmp_path / "state.db").vm("old")
    assert rec is not None and (rec.disk, rec.head, rec.base) == ("", None, None)
    assert rec.creating is False  # made by an older vmkit: complete

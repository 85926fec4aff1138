"""The state database: VMs, images, snapshots, templates and operations in SQLite (WAL mode).

Each method is one transaction, so a crash leaves the old row or the new one, never half.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .spec import VmSpec
from .state import VmState

SCHEMA = """
CREATE TABLE IF NOT EXISTS vms (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, mac TEXT NOT NULL,
    pid INTEGER, reason TEXT NOT NULL DEFAULT '', created REAL NOT NULL, started REAL
);
CREATE TABLE IF NOT EXISTS images (
    name TEXT PRIMARY KEY, digest TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
    meta TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, vm TEXT, name TEXT NOT NULL, parent TEXT, created REAL NOT NULL,
    memory INTEGER NOT NULL, paused INTEGER NOT NULL, layer TEXT NOT NULL, spec TEXT NOT NULL, UNIQUE (vm, name)
);
CREATE TABLE IF NOT EXISTS templates (
    name TEXT PRIMARY KEY, snapshot TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY, subnet TEXT NOT NULL, isolated INTEGER NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,
    progress REAL NOT NULL, message TEXT NOT NULL, error TEXT, created REAL NOT NULL,
    updated REAL NOT NULL
);
"""
# Columns added to ``vms`` since its first version; added to databases made before them.
VM_COLUMNS_ADDED = {
    "disk": "TEXT NOT NULL DEFAULT ''",  # the VM's writable disk layer (disks/<disk>.qcow2)
    "head": "TEXT",  # the snapshot the VM's current state descends from (the next one's parent)
    "base": "TEXT",  # for a fork: the snapshot it was forked from, which it needs
    # 1 until the VM's create (or fork, or import) has finished: a vmkitd killed meanwhile
    # leaves a half-made VM, which the next one removes
    "creating": "INTEGER NOT NULL DEFAULT 0",
}


@dataclass
class VmRecord:
    spec: VmSpec
    state: VmState
    mac: str
    pid: int | None
    reason: str
    created: float
    started: float | None
    disk: str = ""
    head: str | None = None
    base: str | None = None
    creating: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class ImageRecord:
    name: str
    digest: str
    kind: str
    size: int  # bytes on disk
    meta: dict[str, Any]
    created: float


@dataclass
class SnapshotRecord:
    id: str
    vm: str | None  # None once its VM is gone and only a template keeps it
    name: str
    parent: str | None
    created: float
    memory: bool  # False: the disk only
    paused: bool  # the VM was paused when it was taken (a restore leaves it paused)
    layer: str  # the frozen disk layer, disks/<layer>.qcow2
    spec: VmSpec  # the VM's hardware then: a restore or fork needs the same


@dataclass
class NetworkRecord:
    name: str
    subnet: str  # e.g. 10.77.0.0/24
    isolated: bool  # no route out of the host
    created: float


@dataclass
class Template:
    name: str
    snapshot: str
    created: float


@dataclass
class Operation:
    id: str
    kind: str
    target: str
    state: str  # running | succeeded | failed
    progress: float
    message: str
    error: str | None
    created: float
    updated: float


class Store:
    def __init__(self, path: Path, on_change: Callable[[str, str], None] | None = None
                 ) -> None:
        # on_change(kind, name) after each committed change of a VM ("vm") or of a VM's
        # snapshots ("snapshots"): the dashboard's live updates (events.py)
        self._on_change = on_change or (lambda kind, name: None)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(vms)")}
        for column, definition in VM_COLUMNS_ADDED.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE vms ADD COLUMN {column} {definition}")
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._transaction() as db:
            return db.execute(sql, args).rowcount

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- VMs ---------------------------------------------------------------------------

    @staticmethod
    def _vm(row: tuple[Any, ...]) -> VmRecord:
        spec, state, mac, pid, reason, created, started, disk, head, base, creating = row
        return VmRecord(VmSpec.from_json(json.loads(spec)), VmState(state), mac, pid, reason,
                        created, started, disk, head, base, creating=bool(creating))

    _VM_COLS = "spec, state, mac, pid, reason, created, started, disk, head, base, creating"

    def add_vm(self, spec: VmSpec, mac: str, disk: str, base: str | None = None, *,
               creating: bool = False) -> VmRecord:
        """Insert a new VM; sqlite3.IntegrityError if the name is taken. ``creating``: it is
        not made yet, until ``vm_created``."""
        now = time.time()
        self._write("INSERT INTO vms (name, spec, state, mac, created, disk, head, base, "
                    "creating) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (spec.name, json.dumps(spec.to_json()), VmState.STOPPED.value, mac, now,
                     disk, base, base, int(creating)))
        self._on_change("vm", spec.name)
        return VmRecord(spec, VmState.STOPPED, mac, None, "", now, None, disk, base, base,
                        creating)

    def vm_created(self, name: str) -> None:
        """The VM's create has finished (see add_vm)."""
        self._write("UPDATE vms SET creating = 0 WHERE name = ?", (name,))

    def vms(self) -> list[VmRecord]:
        return [self._vm(r) for r in self._rows(f"SELECT {self._VM_COLS} FROM vms ORDER BY created")]

    def vm(self, name: str) -> VmRecord | None:
        rows = self._rows(f"SELECT {self._VM_COLS} FROM vms WHERE name = ?", (name,))
        return self._vm(rows[0]) if rows else None

    def set_vm_state(self, name: str, state: VmState, *, pid: int | None = None,
                     reason: str = "", started: float | None = None) -> None:
        self._write("UPDATE vms SET state = ?, pid = ?, reason = ?, started = ? WHERE name = ?",
                    (state.value, pid, reason, started, name))
        self._on_change("vm", name)

    def set_vm_spec(self, name: str, spec: VmSpec) -> None:
        self._write("UPDATE vms SET spec = ? WHERE name = ?",
                    (json.dumps(spec.to_json()), name))
        self._on_change("vm", name)

    def set_vm_disk(self, name: str, disk: str, head: str | None) -> None:
        self._write("UPDATE vms SET disk = ?, head = ? WHERE name = ?", (disk, head, name))
        self._on_change("vm", name)

    def remove_vm(self, name: str) -> None:
        """Remove the VM with its snapshots, except those a template keeps (they stay, ownerless)."""
        with self._transaction() as db:
            db.execute("DELETE FROM snapshots WHERE vm = ? AND id NOT IN "
                       "(SELECT snapshot FROM templates)", (name,))
            db.execute("UPDATE snapshots SET vm = NULL WHERE vm = ?", (name,))
            db.execute("DELETE FROM vms WHERE name = ?", (name,))
        self._on_change("vm", name)

    # --- snapshots and templates -------------------------------------------------------

    _SNAP_COLS = "id, vm, name, parent, created, memory, paused, layer, spec"

    @staticmethod
    def _snapshot(row: tuple[Any, ...]) -> SnapshotRecord:
        snap_id, vm, name, parent, created, memory, paused, layer, spec = row
        return SnapshotRecord(snap_id, vm, name, parent, created, bool(memory), bool(paused),
                              layer, VmSpec.from_json(json.loads(spec)))

    def add_snapshot(self, snap: SnapshotRecord) -> None:
        """Insert ``snap`` and make it its VM's head; IntegrityError if the name is taken."""
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO snapshots ({self._SNAP_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (snap.id, snap.vm, snap.name, snap.parent, snap.created, int(snap.memory),
                 int(snap.paused), snap.layer, json.dumps(snap.spec.to_json())))
            db.execute("UPDATE vms SET head = ? WHERE name = ?", (snap.id, snap.vm))
        if snap.vm:
            self._on_change("snapshots", snap.vm)

    def snapshots(self, vm: str | None = None) -> list[SnapshotRecord]:
        if vm is None:
            rows = self._rows(f"SELECT {self._SNAP_COLS} FROM snapshots ORDER BY created")
        else:
            rows = self._rows(f"SELECT {self._SNAP_COLS} FROM snapshots WHERE vm = ? "
                              "ORDER BY created", (vm,))
        return [self._snapshot(r) for r in rows]

    def snapshot(self, snap_id: str) -> SnapshotRecord | None:
        rows = self._rows(f"SELECT {self._SNAP_COLS} FROM snapshots WHERE id = ?", (snap_id,))
        return self._snapshot(rows[0]) if rows else None

    def remove_snapshot(self, snap_id: str) -> None:
        """Remove it; its children (and VMs whose head it was) move up to its parent."""
        with self._transaction() as db:
            row = db.execute("SELECT parent, vm FROM snapshots WHERE id = ?",
                             (snap_id,)).fetchone()
            up, vm = row if row else (None, None)
            db.execute("UPDATE snapshots SET parent = ? WHERE parent = ?", (up, snap_id))
            db.execute("UPDATE vms SET head = ? WHERE head = ?", (up, snap_id))
            db.execute("DELETE FROM snapshots WHERE id = ?", (snap_id,))
        if vm:
            self._on_change("snapshots", vm)

    def add_network(self, net: NetworkRecord) -> None:
        """IntegrityError if the name is taken."""
        self._write("INSERT INTO networks VALUES (?, ?, ?, ?)",
                    (net.name, net.subnet, int(net.isolated), net.created))

    def networks(self) -> list[NetworkRecord]:
        return [NetworkRecord(r[0], r[1], bool(r[2]), r[3])
                for r in self._rows("SELECT * FROM networks ORDER BY name")]

    def network(self, name: str) -> NetworkRecord | None:
        return next((n for n in self.networks() if n.name == name), None)

    def remove_network(self, name: str) -> None:
        self._write("DELETE FROM networks WHERE name = ?", (name,))

    def add_template(self, name: str, snap_id: str) -> Template:
        """IntegrityError if the name is taken."""
        t = Template(name, snap_id, time.time())
        self._write("INSERT INTO templates VALUES (?, ?, ?)", (t.name, t.snapshot, t.created))
        return t

    def templates(self) -> list[Template]:
        return [Template(*r) for r in self._rows("SELECT * FROM templates ORDER BY name")]

    def template(self, name: str) -> Template | None:
        rows = self._rows("SELECT * FROM templates WHERE name = ?", (name,))
        return Template(*rows[0]) if rows else None

    def remove_template(self, name: str) -> None:
        """Remove it, and its snapshot too if no VM owns that any more."""
        with self._transaction() as db:
            row = db.execute("SELECT snapshot FROM templates WHERE name = ?",
                             (name,)).fetchone()
            db.execute("DELETE FROM templates WHERE name = ?", (name,))
            if row:
                db.execute("DELETE FROM snapshots WHERE id = ? AND vm IS NULL AND id "
                           "NOT IN (SELECT snapshot FROM templates)", (row[0],))

    # --- images ------------------------------------------------------------------------

    def put_image(self, image: ImageRecord) -> None:
        self._write("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?)",
                    (image.name, image.digest, image.kind, image.size, json.dumps(image.meta),
                     image.created))

    def images(self) -> list[ImageRecord]:
        return [ImageRecord(n, d, k, s, json.loads(m), c)
                for n, d, k, s, m, c in self._rows("SELECT * FROM images ORDER BY name")]

    def image(self, name: str) -> ImageRecord | None:
        return next((i for i in self.images() if i.name == name), None)

    def remove_image(self, name: str) -> None:
        self._write("DELETE FROM images WHERE name = ?", (name,))

    # --- operations --------------------------------------------------------------------

    def add_operation(self, kind: str, target: str) -> Operation:
        now = time.time()
        op = Operation(uuid.uuid4().hex[:12], kind, target, "running", 0.0, "", None, now, now)
        self._write("INSERT INTO operations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (op.id, kind, target, op.state, 0.0, "", None, now, now))
        return op

    def update_operation(self, op_id: str, *, state: str = "running", progress: float,
                         message: str, error: str | None = None) -> None:
        self._write("UPDATE operations SET state = ?, progress = ?, message = ?, error = ?, "
                    "updated = ? WHERE id = ?", (state, progress, message, error, time.time(), op_id))

    def operation(self, op_id: str) -> Operation | None:
        rows = self._rows("SELECT * FROM operations WHERE id = ?", (op_id,))
        return Operation(*rows[0]) if rows else None

    def operations(self, limit: int) -> list[Operation]:
        """The ``limit`` latest operations, newest first."""
        rows = self._rows("SELECT * FROM operations ORDER BY created DESC LIMIT ?", (limit,))
        return [Operation(*row) for row in rows]

    def fail_interrupted_operations(self) -> None:
        """Operations still 'running' belong to a daemon that died; they will not finish."""
        self._write("UPDATE operations SET state = 'failed', error = ? WHERE state = 'running'",
                    ("interrupted: the daemon stopped while it ran; start it again",))

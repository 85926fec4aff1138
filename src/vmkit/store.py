"""The state database: VMs, images and operations in SQLite (WAL mode).

Each method is one transaction, so a crash leaves the old row or the new one, never half.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
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
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,
    progress REAL NOT NULL, message TEXT NOT NULL, error TEXT, created REAL NOT NULL,
    updated REAL NOT NULL
);
"""


@dataclass
class VmRecord:
    spec: VmSpec
    state: VmState
    mac: str
    pid: int | None
    reason: str
    created: float
    started: float | None

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
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                count = self._db.execute(sql, args).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return count

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- VMs ---------------------------------------------------------------------------

    @staticmethod
    def _vm(row: tuple[Any, ...]) -> VmRecord:
        spec, state, mac, pid, reason, created, started = row
        return VmRecord(VmSpec.from_json(json.loads(spec)), VmState(state), mac, pid, reason,
                        created, started)

    _VM_COLS = "spec, state, mac, pid, reason, created, started"

    def add_vm(self, spec: VmSpec, mac: str) -> VmRecord:
        """Insert a new VM; sqlite3.IntegrityError if the name is taken."""
        now = time.time()
        self._write("INSERT INTO vms (name, spec, state, mac, created) VALUES (?, ?, ?, ?, ?)",
                    (spec.name, json.dumps(spec.to_json()), VmState.STOPPED.value, mac, now))
        return VmRecord(spec, VmState.STOPPED, mac, None, "", now, None)

    def vms(self) -> list[VmRecord]:
        return [self._vm(r) for r in self._rows(f"SELECT {self._VM_COLS} FROM vms ORDER BY created")]

    def vm(self, name: str) -> VmRecord | None:
        rows = self._rows(f"SELECT {self._VM_COLS} FROM vms WHERE name = ?", (name,))
        return self._vm(rows[0]) if rows else None

    def set_vm_state(self, name: str, state: VmState, *, pid: int | None = None,
                     reason: str = "", started: float | None = None) -> None:
        self._write("UPDATE vms SET state = ?, pid = ?, reason = ?, started = ? WHERE name = ?",
                    (state.value, pid, reason, started, name))

    def remove_vm(self, name: str) -> None:
        self._write("DELETE FROM vms WHERE name = ?", (name,))

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

    def fail_interrupted_operations(self) -> None:
        """Operations still 'running' belong to a daemon that died; they will not finish."""
        self._write("UPDATE operations SET state = 'failed', error = ? WHERE state = 'running'",
                    ("interrupted: the daemon stopped while it ran; start it again",))

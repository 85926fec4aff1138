"""The routes the dashboard added, on a fake core over a real store and home: the operations
log (GET /v1/operations), the host summary (GET /v1/info/usage), and adding and removing
remote hosts (POST and DELETE /v1/hosts), checked against a small HTTP server standing in for
the other vmkitd."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import vmkit.store
from vmkit.api.app import create_app
from vmkit.core.core import Core
from vmkit.core.registry import Registry
from vmkit.paths import HomePaths
from vmkit.spec import make_spec
from vmkit.state import VmState
from vmkit.store import Store

from .fake_server import fake_server

with warnings.catch_warnings():  # starlette's notice about httpx; not ours to fix
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient

TOKEN = "local-token"
REMOTE_TOKEN = "remote-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class FakeCore:
    """The core's real code for these routes, on a real store and home in tmp."""

    def __init__(self, root: Path) -> None:
        self.paths = HomePaths(root)
        self.store = Store(root / "state.db")

    operations = Registry.operations
    peers = Core.peers


_CORE = FakeCore.__new__(FakeCore)  # given a fresh home by each test
_APP = create_app(fake_server(_CORE), token=TOKEN)


@pytest.fixture
def core(tmp_path: Path) -> FakeCore:
    _CORE.__init__(tmp_path)  # type: ignore[misc]
    return _CORE


@pytest.fixture
def api(core: FakeCore) -> TestClient:
    return TestClient(_APP)


class Remote(BaseHTTPRequestHandler):
    """Another vmkitd's /v1/info: 200 with its token, 401 without."""

    def do_GET(self) -> None:
        if self.path != "/v1/info":
            self._answer(404, {"error": "not_found"})
        elif self.headers.get("authorization") != f"Bearer {REMOTE_TOKEN}":
            self._answer(401, {"error": "unauthorized", "message": "bad token"})
        else:
            self._answer(200, {"home": "/x", "pid": 42, "accel": None, "accel_reason": None})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Remote)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def message(r: Any) -> str:
    return str(r.json()["message"])


# --- GET /v1/operations ----------------------------------------------------------------------

@pytest.mark.parametrize("limit", ["0", "-1", "501", "ten", "1.5"])
def test_operations_refuse_a_limit_out_of_range(api: TestClient, limit: str) -> None:
    r = api.get(f"/v1/operations?limit={limit}", headers=AUTH)
    assert r.status_code == 422, r.text
    assert "limit" in message(r)


def test_operations_come_newest_first_up_to_the_limit(api: TestClient, core: FakeCore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1000, 2000))  # one tick per operation: no two made at the same time
    monkeypatch.setattr(vmkit.store, "time", SimpleNamespace(time=lambda: float(next(clock))))
    made = [core.store.add_operation("build", f"img{i}").id for i in range(5)]
    core.store.update_operation(made[0], state="succeeded", progress=1.0, message="done")
    r = api.get("/v1/operations?limit=3", headers=AUTH)
    assert r.status_code == 200
    assert [op["id"] for op in r.json()] == made[::-1][:3]
    everything = api.get("/v1/operations", headers=AUTH).json()
    assert [op["id"] for op in everything] == made[::-1]
    assert (everything[-1]["state"], everything[-1]["target"]) == ("succeeded", "img0")


# --- GET /v1/info/usage ----------------------------------------------------------------------

def test_usage_is_within_the_bounds_of_this_host(api: TestClient, core: FakeCore) -> None:
    core.store.add_vm(make_spec("up", cpus=2, memory="512M"), "52:54:00:00:00:01", "d")
    core.store.set_vm_state("up", VmState.RUNNING, pid=1)
    core.store.add_vm(make_spec("down", cpus=4, memory="1G"), "52:54:00:00:00:02", "d")
    u = api.get("/v1/info/usage", headers=AUTH).json()
    assert u["cpus"] >= 1 and 0 <= u["cpu_percent"] <= 100
    assert len(u["load"]) == 3 and all(x >= 0 for x in u["load"])
    assert 0 < u["memory_used_bytes"] < u["memory_total_bytes"]
    assert 0 < u["disk_used_bytes"] <= u["disk_total_bytes"]
    assert u["disk_path"] == str(core.paths.root)
    # only the running VM counts towards what the VMs were given
    assert (u["vms"], u["vms_running"], u["vm_cpus"], u["vm_memory_bytes"]) == (2, 1, 2, 512 << 20)


# --- POST and DELETE /v1/hosts ---------------------------------------------------------------

def test_a_host_that_takes_its_token_is_added_and_removed(api: TestClient, remote: str) -> None:
    r = api.post("/v1/hosts", headers=AUTH, json={"name": "lab", "url": remote + "/",
                                                   "token": f" {REMOTE_TOKEN} "})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "lab", "url": remote}
    assert api.get("/v1/hosts", headers=AUTH).json() == [{"name": "lab", "url": remote}]
    again = api.post("/v1/hosts", headers=AUTH, json={"name": "lab", "url": remote,
                                                       "token": REMOTE_TOKEN})
    assert again.status_code == 409 and "already registered" in message(again)
    assert api.delete("/v1/hosts/lab", headers=AUTH).status_code == 204
    assert api.get("/v1/hosts", headers=AUTH).json() == []
    gone = api.delete("/v1/hosts/lab", headers=AUTH)
    assert gone.status_code == 404 and "no host named 'lab'" in message(gone)


@pytest.mark.parametrize("fields, says", [
    ({"name": "bad name"}, "host name"),
    ({"url": "ftp://10.0.0.5:8765"}, "use http(s)://ADDR:PORT"),
    ({"url": "http://10.0.0.5"}, "use http(s)://ADDR:PORT"),
    ({"url": "http://10.0.0.5:8765/v1"}, "use http(s)://ADDR:PORT"),
    ({"token": "  "}, "give the host's token"),
    ({"ca": "not a certificate"}, "the CA is not a PEM certificate"),
    ({"token": "wrong"}, "refused the token; copy it from 'vmkit host token'"),
    ({"url": "http://127.0.0.1:9"}, "does not answer"),  # discard: nothing listens
    ({"port": 8765}, "unknown field 'port'"),
])
def test_a_host_is_refused_with_one_clear_message(api: TestClient, core: FakeCore, remote: str,
                                                  fields: dict[str, Any], says: str) -> None:
    body = {"name": "lab", "url": remote, "token": REMOTE_TOKEN, **fields}
    r = api.post("/v1/hosts", headers=AUTH, json=body)
    assert r.status_code == 422, r.text
    assert says in message(r)
    assert not core.paths.hosts.exists()  # nothing was registered


def test_a_url_that_is_not_a_vmkitd_is_refused(api: TestClient, remote: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Remote, "do_GET", lambda self: self._answer(200, {"hello": 1}))
    r = api.post("/v1/hosts", headers=AUTH, json={"name": "lab", "url": remote,
                                                   "token": REMOTE_TOKEN})
    assert r.status_code == 422 and "is not a vmkitd API" in message(r)

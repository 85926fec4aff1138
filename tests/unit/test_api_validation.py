"""The API: input validation, error bodies, OpenAPI and the bearer token, on a fake server.

Its fake core implements only what these routes reach, and its services fail at first use
(fake_server.py); any other call fails the test loudly.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from vmkit.api.app import create_app
from vmkit.core.lifecycle import Lifecycle
from vmkit.errors import NotFoundError
from vmkit.services.migration import Migrations
from vmkit.spec import VmSpec

from .fake_server import Recording, fake_server

with warnings.catch_warnings():  # starlette's notice about httpx; not ours to fix
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient


class FakeCore:
    """The parts of the core these routes reach (registry, lifecycle, guest, images), each
    call recorded in one log."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.vms = _FakeLifecycle(self.calls)
        self.guest = _FakeGuest(self.calls)
        self.image_ops = _FakeImages(self.calls)

    def list_vms(self) -> list[dict[str, Any]]:
        self.calls.append(("list_vms", None))
        return []

    def get_vm(self, name: str) -> dict[str, Any]:
        self.calls.append(("get_vm", name))
        raise NotFoundError(f"no VM named {name!r}; see 'vmkit ls'")


class _FakeLifecycle:
    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    create_from = Lifecycle.create_from  # the real check of a request, then the fake create

    async def create(self, spec: VmSpec) -> dict[str, Any]:
        self.calls.append(("create_vm", spec))
        raise NotFoundError(f"image {spec.image!r} not found")  # stop here: no VM to render


class _FakeGuest:
    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    async def exec(self, name: str, argv: list[str], stdin: bytes | None = None) -> Any:
        self.calls.append(("exec_vm", (name, argv, stdin)))
        raise NotFoundError(f"no VM named {name!r}")


class _FakeImages:
    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    def get(self, name: str) -> dict[str, Any]:
        self.calls.append(("get_image", name))
        raise NotFoundError(f"image {name!r} not found")


# Building the app takes a good fraction of a second, so each is built once per module;
# the fake core's call log is cleared before every test.
_CORE = FakeCore()
_APP = create_app(fake_server(_CORE))
_LOCKED_APP = create_app(fake_server(_CORE), token="s3cret")


@pytest.fixture
def core() -> FakeCore:
    _CORE.calls.clear()
    return _CORE


@pytest.fixture
def client(core: FakeCore) -> TestClient:
    return TestClient(_APP)


def assert_error(r: Any, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == kind
    assert isinstance(body["message"], str) and body["message"]
    return str(body["message"])


# --- names in the path ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a.b", "-a", "a-", "a_b", "a" * 64])
@pytest.mark.parametrize("route", ["/v1/vms/{}", "/v1/vms/{}/logs"])
def test_bad_vm_name(client: TestClient, core: FakeCore, route: str, name: str) -> None:
    msg = assert_error(client.get(route.format(name)), 422, "invalid_input")
    assert "name" in msg
    assert core.calls == []  # rejected before the core is asked


@pytest.mark.parametrize("method, route", [
    ("post", "/v1/vms/a.b/start"), ("post", "/v1/vms/a.b/stop"), ("delete", "/v1/vms/a.b"),
    ("post", "/v1/vms/a.b/kill"), ("get", "/v1/images/a.b"), ("delete", "/v1/images/a.b"),
])
def test_bad_name_on_other_routes(client: TestClient, core: FakeCore, method: str,
                                  route: str) -> None:
    msg = assert_error(client.request(method.upper(), route), 422, "invalid_input")
    assert "'a.b'" in msg
    assert core.calls == []


@pytest.mark.parametrize("name", ["web%0A", "%C3%A4"])
def test_percent_encoded_name(client: TestClient, core: FakeCore, name: str) -> None:
    msg = assert_error(client.get(f"/v1/vms/{name}"), 404, "not_found")
    assert "percent-encoded" in msg
    assert core.calls == []


def test_unknown_vm(client: TestClient, core: FakeCore) -> None:
    msg = assert_error(client.get("/v1/vms/web"), 404, "not_found")
    assert "web" in msg
    assert core.calls == [("get_vm", "web")]


def test_unknown_image(client: TestClient) -> None:
    assert_error(client.get("/v1/images/tiny"), 404, "not_found")


def test_list_vms(client: TestClient) -> None:
    r = client.get("/v1/vms")
    assert r.status_code == 200 and r.json() == []


# --- POST /v1/vms --------------------------------------------------------------------------

def test_create_memory_garbage(client: TestClient, core: FakeCore) -> None:
    msg = assert_error(client.post("/v1/vms", json={"name": "web", "memory": "lots"}), 422,
                       "invalid_input")
    assert "memory" in msg and "lots" in msg
    assert core.calls == []


@pytest.mark.parametrize("cpus", [0, -1, 65])
def test_create_cpus_out_of_range(client: TestClient, core: FakeCore, cpus: int) -> None:
    msg = assert_error(client.post("/v1/vms", json={"name": "web", "cpus": cpus}), 422,
                       "invalid_input")
    assert "cpus" in msg and "1-64" in msg
    assert core.calls == []


@pytest.mark.parametrize("body, word", [
    ({"name": "a.b"}, "name"),
    ({"name": "web", "memory": "16M"}, "memory"),
    ({"name": "web", "disk": "1K"}, "disk"),
    ({"name": "web", "ports": ["8080:80/sctp"]}, "protocol"),
    ({"name": "web", "ports": ["8080:80"], "network": "none"}, "network"),
    ({"name": "web", "network": "no such!"}, "network"),  # not a private network's name
    ({"name": "web", "network": ["lab"] * 9}, "NICs"),
    ({"name": "web", "cpus": "many"}, "cpus"),
    ({"image": "tiny"}, "name"),
    ({"name": "a" * 64}, "name"),
])
def test_create_rejects(client: TestClient, core: FakeCore, body: dict[str, Any],
                        word: str) -> None:
    msg = assert_error(client.post("/v1/vms", json=body), 422, "invalid_input")
    assert word in msg
    assert core.calls == []


def test_create_not_json(client: TestClient, core: FakeCore) -> None:
    r = client.post("/v1/vms", content=b"{not json", headers={"content-type": "application/json"})
    assert "not valid JSON" in assert_error(r, 422, "invalid_input")
    assert core.calls == []


@pytest.mark.parametrize("body,headers", [
    (b'{"name": "web"}', {}),  # JSON sent without its content type
    (b'["web"]', {"content-type": "application/json"}),
    (b'"web"', {"content-type": "application/json"}),
])
def test_a_body_that_is_no_object_says_so(client: TestClient, core: FakeCore, body: bytes,
                                          headers: dict[str, str]) -> None:
    msg = assert_error(client.post("/v1/vms", content=body, headers=headers), 422,
                       "invalid_input")
    assert msg.startswith("the body is not the JSON object this request takes")
    assert "content-type: application/json" in msg
    assert core.calls == []


def test_create_valid_reaches_host(client: TestClient, core: FakeCore) -> None:
    r = client.post("/v1/vms", json={"name": "web", "cpus": 2, "memory": "128M",
                                      "ports": ["8080:80"], "network": "restricted"})
    assert_error(r, 404, "not_found")  # the fake core's answer, passed through
    [(call, spec)] = core.calls
    assert call == "create_vm"
    assert (spec.name, spec.cpus, spec.memory_mib, spec.network) == ("web", 2, 128, "restricted")
    assert [str(p) for p in spec.ports] == ["127.0.0.1:8080->80/tcp"]


# --- each resource's routes reach its service ------------------------------------------------

class _Migrations(Recording):
    """Records each call, and finds the destination as the real service does."""

    peer = Migrations.peer


_SERVICES = {name: Recording() for name in ("networks", "snapshots", "portable", "forensics",
                                             "stats", "display")}
_SERVICES["migrations"] = _Migrations()
_SERVICE_APP = create_app(fake_server(_CORE, **_SERVICES))


@pytest.mark.parametrize("method, path, body, service, call", [
    ("GET", "/v1/vms/web/snapshots", None, "snapshots", ("of_vm", ("web",))),
    ("POST", "/v1/vms/web/snapshots", {"name": "s1"}, "snapshots",
     ("create", ("web", "s1", True))),
    ("GET", "/v1/vms/web/snapshots/s1", None, "snapshots", ("get", ("web", "s1"))),
    ("POST", "/v1/vms/web/snapshots/s1/restore", None, "snapshots", ("restore", ("web", "s1"))),
    ("DELETE", "/v1/vms/web/snapshots/s1", None, "snapshots", ("remove", ("web", "s1"))),
    ("POST", "/v1/forks", {"source": "web@s1", "name": "f1"}, "snapshots",
     ("fork", ("web@s1", "f1", [], None, False))),
    ("GET", "/v1/templates", None, "snapshots", ("list_templates", ())),
    ("POST", "/v1/templates", {"name": "t1", "source": "web@s1"}, "snapshots",
     ("create_template", ("t1", "web@s1"))),
    ("POST", "/v1/templates/fast", {}, "snapshots",
     ("ensure_fast_template", ("tiny", 1, "256M", "nat"))),
    ("DELETE", "/v1/templates/t1", None, "snapshots", ("remove_template", ("t1",))),
    ("GET", "/v1/networks", None, "networks", ("all", ())),
    ("POST", "/v1/networks", {"name": "lab"}, "networks", ("create", ("lab", None, False))),
    ("DELETE", "/v1/networks/lab", None, "networks", ("remove", ("lab",))),
    ("POST", "/v1/vms/web/migrate/cancel", None, "migrations", ("cancel", ("web",))),
    ("POST", "/v1/migrations/web/digest", None, "migrations", ("digest", ("web",))),
    ("POST", "/v1/migrations/web/finish", None, "migrations", ("finish", ("web", 30.0))),
    ("DELETE", "/v1/migrations/web", None, "migrations", ("abort", ("web",))),
    ("POST", "/v1/vms/web/export", {}, "portable", ("export", ("web", "vmkit", False, None))),
    ("POST", "/v1/vms/web/dump", None, "forensics", ("dump", ("web",))),
    ("GET", "/v1/vms/web/diff?from=s1", None, "forensics", ("diff", ("web", "s1", None))),
    ("POST", "/v1/vms/web/capture", None, "forensics", ("start_capture", ("web",))),
    ("POST", "/v1/vms/web/capture/stop", None, "forensics", ("stop_capture", ("web",))),
    ("GET", "/v1/vms/web/stats", None, "stats", ("of", ("web",))),
    ("GET", "/metrics", None, "stats", ("all", ())),
    ("GET", "/v1/vms/web/display", None, "display", ("vnc", ("web",))),
])
def test_routes_reach_their_service(core: FakeCore, method: str, path: str,
                                    body: dict[str, Any] | None, service: str,
                                    call: tuple[str, tuple[Any, ...]]) -> None:
    for recording in _SERVICES.values():
        recording.calls.clear()
    r = TestClient(_SERVICE_APP).request(method, path, json=body)
    assert_error(r, 404, "not_found")  # the fake service's answer, passed through
    assert _SERVICES[service].calls == [(*call, {})]
    assert all(not rec.calls for name, rec in _SERVICES.items() if name != service)
    assert core.calls == []


def test_migrate_reaches_the_migrations_service(core: FakeCore) -> None:
    from vmkit.services.migration import Peer

    migrations = _SERVICES["migrations"]
    migrations.calls.clear()
    r = TestClient(_SERVICE_APP).post("/v1/vms/web/migrate", json={
        "url": "http://127.0.0.1:1/", "token": "t", "ports": ["8081:80"]})
    assert_error(r, 404, "not_found")
    assert migrations.calls == [("start", ("web", Peer("http://127.0.0.1:1", "t", None), False,
                                           None, None, ["8081:80"]), {})]
    migrations.calls.clear()
    r = TestClient(_SERVICE_APP).post("/v1/vms/web/migrate", json={"url": "http://a:1"})
    assert "registered host" in assert_error(r, 422, "invalid_input")
    assert migrations.calls == [] and core.calls == []


# --- OpenAPI -------------------------------------------------------------------------------

def test_openapi(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["info"]["title"] == "vmkit"
    paths = doc["paths"]
    assert paths and all(p.startswith("/v1/") or p == "/metrics" for p in paths)
    for p in ("/v1/vms", "/v1/vms/{name}", "/v1/vms/{name}/exec", "/v1/images/{name}/build",
              "/v1/operations/{op_id}", "/v1/info"):
        assert p in paths
    assert {"get", "post"} <= set(paths["/v1/vms"])
    assert "Error" in doc["components"]["schemas"]


# --- bearer token --------------------------------------------------------------------------

@pytest.fixture
def locked(core: FakeCore) -> TestClient:
    return TestClient(_LOCKED_APP)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Bearer s3cret2"},
    {"Authorization": "Bearer s3cre"},
    {"Authorization": "Basic s3cret"},
    {"Authorization": "s3cret"},
    {"Authorization": ""},
])
@pytest.mark.parametrize("route", ["/v1/vms", "/v1/vms/web", "/v1/templates/t",
                                   "/v1/networks/n"])
def test_token_refused(locked: TestClient, core: FakeCore, headers: dict[str, str],
                       route: str) -> None:
    msg = assert_error(locked.get(route, headers=headers), 401, "unauthorized")
    assert "Bearer" in msg
    assert core.calls == []


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "Bearer  s3cret "])
def test_token_accepted(locked: TestClient, core: FakeCore, header: str) -> None:
    r = locked.get("/v1/vms", headers={"Authorization": header})
    assert r.status_code == 200 and r.json() == []
    assert core.calls == [("list_vms", None)]


def test_token_checked_before_validation(locked: TestClient, core: FakeCore) -> None:
    assert_error(locked.get("/v1/vms/a.b"), 401, "unauthorized")
    assert_error(locked.get("/v1/vms/a.b", headers={"Authorization": "Bearer s3cret"}), 422,
                 "invalid_input")


def test_non_ascii_token_is_refused(locked: TestClient, core: FakeCore) -> None:
    assert_error(locked.get("/v1/vms", headers={"Authorization": b"Bearer \xe9"}), 401,
                 "unauthorized")


@pytest.mark.parametrize("route", ["/openapi.json", "/docs", "/redoc"])
def test_the_api_description_needs_no_token(locked: TestClient, route: str) -> None:
    """It holds no data, and client generators need the schema before any token."""
    r = locked.get(route)
    assert r.status_code == 200
    assert ("/v1/vms" if route == "/openapi.json" else "/openapi.json") in r.text


def test_no_token_configured_needs_none(client: TestClient) -> None:
    assert client.get("/v1/vms").status_code == 200

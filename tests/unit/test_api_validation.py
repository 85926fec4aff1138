"""api/app.py: input validation, error bodies, OpenAPI and the bearer token, on a fake host.

The fake implements only what these routes reach; any other call fails the test loudly.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import pytest

from vmkit.api.app import create_app
from vmkit.errors import NotFoundError
from vmkit.spec import VmSpec

with warnings.catch_warnings():  # starlette's notice about httpx; not ours to fix
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient


class FakeHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def list_vms(self) -> list[dict[str, Any]]:
        self.calls.append(("list_vms", None))
        return []

    def get_vm(self, name: str) -> dict[str, Any]:
        self.calls.append(("get_vm", name))
        raise NotFoundError(f"no VM named {name!r}; see 'vmkit ls'")

    def get_image(self, name: str) -> dict[str, Any]:
        self.calls.append(("get_image", name))
        raise NotFoundError(f"image {name!r} not found")

    async def create_vm(self, spec: VmSpec) -> dict[str, Any]:
        self.calls.append(("create_vm", spec))
        raise NotFoundError(f"image {spec.image!r} not found")  # stop here: no VM to render

    async def exec_vm(self, name: str, argv: list[str], stdin: bytes | None = None) -> Any:
        self.calls.append(("exec_vm", (name, argv, stdin)))
        raise NotFoundError(f"no VM named {name!r}")


# Building the app takes a good fraction of a second, so each is built once per module;
# the fake host's call log is cleared before every test.
_HOST = FakeHost()
_APP = create_app(SimpleNamespace(core=_HOST))  # type: ignore[arg-type]
_LOCKED_APP = create_app(SimpleNamespace(core=_HOST), token="s3cret")  # type: ignore[arg-type]


@pytest.fixture
def host() -> FakeHost:
    _HOST.calls.clear()
    return _HOST


@pytest.fixture
def client(host: FakeHost) -> TestClient:
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
def test_bad_vm_name(client: TestClient, host: FakeHost, route: str, name: str) -> None:
    msg = assert_error(client.get(route.format(name)), 422, "invalid_input")
    assert "name" in msg
    assert host.calls == []  # rejected before the host is asked


@pytest.mark.parametrize("method, route", [
    ("post", "/v1/vms/a.b/start"), ("post", "/v1/vms/a.b/stop"), ("delete", "/v1/vms/a.b"),
    ("post", "/v1/vms/a.b/kill"), ("get", "/v1/images/a.b"), ("delete", "/v1/images/a.b"),
])
def test_bad_name_on_other_routes(client: TestClient, host: FakeHost, method: str,
                                  route: str) -> None:
    msg = assert_error(client.request(method.upper(), route), 422, "invalid_input")
    assert "'a.b'" in msg
    assert host.calls == []


@pytest.mark.parametrize("name", ["web%0A", "%C3%A4"])
def test_percent_encoded_name(client: TestClient, host: FakeHost, name: str) -> None:
    msg = assert_error(client.get(f"/v1/vms/{name}"), 404, "not_found")
    assert "percent-encoded" in msg
    assert host.calls == []


def test_unknown_vm(client: TestClient, host: FakeHost) -> None:
    msg = assert_error(client.get("/v1/vms/web"), 404, "not_found")
    assert "web" in msg
    assert host.calls == [("get_vm", "web")]


def test_unknown_image(client: TestClient) -> None:
    assert_error(client.get("/v1/images/tiny"), 404, "not_found")


def test_list_vms(client: TestClient) -> None:
    r = client.get("/v1/vms")
    assert r.status_code == 200 and r.json() == []


# --- POST /v1/vms --------------------------------------------------------------------------

def test_create_memory_garbage(client: TestClient, host: FakeHost) -> None:
    msg = assert_error(client.post("/v1/vms", json={"name": "web", "memory": "lots"}), 422,
                       "invalid_input")
    assert "memory" in msg and "lots" in msg
    assert host.calls == []


@pytest.mark.parametrize("cpus", [0, -1, 65])
def test_create_cpus_out_of_range(client: TestClient, host: FakeHost, cpus: int) -> None:
    msg = assert_error(client.post("/v1/vms", json={"name": "web", "cpus": cpus}), 422,
                       "invalid_input")
    assert "cpus" in msg and "1-64" in msg
    assert host.calls == []


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
def test_create_rejects(client: TestClient, host: FakeHost, body: dict[str, Any],
                        word: str) -> None:
    msg = assert_error(client.post("/v1/vms", json=body), 422, "invalid_input")
    assert word in msg
    assert host.calls == []


def test_create_not_json(client: TestClient, host: FakeHost) -> None:
    r = client.post("/v1/vms", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_input")
    assert host.calls == []


def test_create_valid_reaches_host(client: TestClient, host: FakeHost) -> None:
    r = client.post("/v1/vms", json={"name": "web", "cpus": 2, "memory": "128M",
                                      "ports": ["8080:80"], "network": "restricted"})
    assert_error(r, 404, "not_found")  # the fake host's answer, passed through
    [(call, spec)] = host.calls
    assert call == "create_vm"
    assert (spec.name, spec.cpus, spec.memory_mib, spec.network) == ("web", 2, 128, "restricted")
    assert [str(p) for p in spec.ports] == ["127.0.0.1:8080->80/tcp"]


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
def locked(host: FakeHost) -> TestClient:
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
@pytest.mark.parametrize("route", ["/v1/vms", "/v1/vms/web", "/openapi.json"])
def test_token_refused(locked: TestClient, host: FakeHost, headers: dict[str, str],
                       route: str) -> None:
    msg = assert_error(locked.get(route, headers=headers), 401, "unauthorized")
    assert "Bearer" in msg
    assert host.calls == []


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "Bearer  s3cret "])
def test_token_accepted(locked: TestClient, host: FakeHost, header: str) -> None:
    r = locked.get("/v1/vms", headers={"Authorization": header})
    assert r.status_code == 200 and r.json() == []
    assert host.calls == [("list_vms", None)]


def test_token_checked_before_validation(locked: TestClient, host: FakeHost) -> None:
    assert_error(locked.get("/v1/vms/a.b"), 401, "unauthorized")
    assert_error(locked.get("/v1/vms/a.b", headers={"Authorization": "Bearer s3cret"}), 422,
                 "invalid_input")


def test_non_ascii_token_is_refused(locked: TestClient, host: FakeHost) -> None:
    assert_error(locked.get("/v1/vms", headers={"Authorization": b"Bearer \xe9"}), 401,
                 "unauthorized")


def test_no_token_configured_needs_none(client: TestClient) -> None:
    assert client.get("/v1/vms").status_code == 200

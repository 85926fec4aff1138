"""What a hostile client sends: names that try to leave their place in the URL (through raw
HTTP and through the SDK), oversized bodies, unknown fields, bad stdin and argv. On a fake
server that records every call: a refused request must reach none."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from vmkit import Client
from vmkit.api.guards import body_cap, path_problem
from vmkit.errors import InvalidInputError

from .test_api_validation import _APP, FakeCore, assert_error, client, core  # noqa: F401

# What a name must never do in a path: climb, split, end the path, or hide any of these
# behind percent-encoding (once or twice).
HOSTILE = ["..", ".", "../../victim", "a/b", "a?b", "a#b", "%2f", "a%2Fb", "..%2f..%2fvictim",
           "%2e%2e", "%252e%252e", "", "a b", "a\x00b", "web\n"]
ENCODED = ["..", ".", "%2f", "%2F", "a%2Fsnapshots%2Fb", "%2e%2e", "%2E%2E%2Fvictim",
           "..%2fvictim", "%3F", "%23", "%00", "%20", "%252e%252e", "%C3%A4"]


def test_path_problem() -> None:
    assert path_problem(b"/v1/vms/web/snapshots/s1") is None
    assert path_problem(b"/ui/vendor/novnc/core/rfb.js") is None
    for bad in (b"/v1/vms/web/..", b"/v1/vms/./web", b"/v1/vms//web", b"/v1/vms/a%2Fb",
                b"/v1/vms/%2e%2e", b"/v1/vms/a#b", b"/v1/vms/\xc3\xa4", b"/v1/vms/a b"):
        assert path_problem(bad) is not None, bad


def _asgi(method: str, raw_path: bytes) -> tuple[int, dict[str, Any]]:
    """Send one request to the app with exactly this path, as a raw HTTP client would (httpx
    itself would clean up '..')."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "root_path": "", "query_string": b"",
             "raw_path": raw_path, "path": raw_path.decode("latin-1"), "server": None,
             "client": ("127.0.0.1", 1), "headers": [(b"content-type", b"application/json")]}
    asyncio.run(_APP(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body)


def _routes_with_names() -> list[tuple[str, str, list[str]]]:
    doc = _APP.openapi()
    return [(method.upper(), path, [p["name"] for p in op.get("parameters", [])
                                    if p["in"] == "path"])
            for path, ops in doc["paths"].items() for method, op in ops.items()
            if "{" in path]


ROUTES = _routes_with_names()


def test_every_route_with_a_name_is_covered() -> None:
    assert len(ROUTES) >= 35
    assert all(params for _, _, params in ROUTES)


@pytest.mark.parametrize("method, route, params", ROUTES,
                         ids=[f"{m} {r}" for m, r, _ in ROUTES])
def test_raw_http_names_cannot_leave_their_segment(core: FakeCore, method: str, route: str,
                                                   params: list[str]) -> None:
    for param in params:
        for bad in ENCODED:
            path = route
            for p in params:  # the other names are good ones
                path = path.replace("{" + p + "}", bad if p == param else "web")
            status, body = _asgi(method, path.encode())
            assert status in (404, 422), (path, status, body)
            assert set(body) == {"error", "message"} and body["message"], body
    assert core.calls == []


def test_raw_http_dot_segments_are_refused(core: FakeCore) -> None:
    # What 'vmkit snapshot rm pf1 ../../victim' sent before the client encoded names.
    status, body = _asgi("DELETE", b"/v1/vms/pf1/snapshots/../../victim")
    assert status == 404 and "'..'" in body["message"]
    status, body = _asgi("POST", b"/v1/vms/pf1/snapshots/../../victim2/kill")
    assert status == 404
    assert core.calls == []


# --- the SDK ---------------------------------------------------------------------------------

def _sdk_calls(tmp: Path) -> dict[str, Callable[[Client, str], Any]]:
    """Every Client method that puts a name into a URL, called with name ``n``."""
    return {
        "get_image": lambda c, n: c.get_image(n),
        "build_image": lambda c, n: c.build_image(n),
        "import_image": lambda c, n: c.import_image(n, "/x.iso"),
        "cancel_operation": lambda c, n: c.cancel_operation(n),
        "remove_image": lambda c, n: c.remove_image(n),
        "operation": lambda c, n: c.operation(n),
        "wait_operation": lambda c, n: c.wait_operation(n),
        "get_vm": lambda c, n: c.get_vm(n),
        "start_vm": lambda c, n: c.start_vm(n),
        "stop_vm": lambda c, n: c.stop_vm(n),
        "resize_vm": lambda c, n: c.resize_vm(n, cpus=2),
        "update_vm": lambda c, n: c.update_vm(n, restart="always"),
        "kill_vm": lambda c, n: c.kill_vm(n),
        "restart_vm": lambda c, n: c.restart_vm(n),
        "pause_vm": lambda c, n: c.pause_vm(n),
        "resume_vm": lambda c, n: c.resume_vm(n),
        "remove_vm": lambda c, n: c.remove_vm(n),
        "list_snapshots": lambda c, n: c.list_snapshots(n),
        "create_snapshot": lambda c, n: c.create_snapshot(n),
        "get_snapshot": lambda c, n: c.get_snapshot("pf1", n),
        "restore_snapshot": lambda c, n: c.restore_snapshot("pf1", n),
        "remove_snapshot": lambda c, n: c.remove_snapshot("pf1", n),
        "remove_template": lambda c, n: c.remove_template(n),
        "get_template": lambda c, n: c.get_template(n),
        "get_network": lambda c, n: c.get_network(n),
        "cancel_capture": lambda c, n: c.cancel_capture(n),
        "migrate": lambda c, n: c.migrate(n, "http://127.0.0.1:1", "t"),
        "cancel_migration": lambda c, n: c.cancel_migration(n),
        "export_vm": lambda c, n: c.export_vm(n, tmp / "e.tar"),
        "dump_vm": lambda c, n: c.dump_vm(n, tmp / "d.core"),
        "remove_network": lambda c, n: c.remove_network(n),
        "vnc_display": lambda c, n: c.vnc_display(n),
        "stats": lambda c, n: c.stats(n),
        "diff": lambda c, n: c.diff(n),
        "start_capture": lambda c, n: c.start_capture(n),
        "stop_capture": lambda c, n: c.stop_capture(n, tmp / "c.pcap"),
        "exec_stream": lambda c, n: list(c.exec_stream(n, ["true"])),
        "exec": lambda c, n: c.exec(n, ["true"]),
        "read_file": lambda c, n: list(c.read_file(n, "/etc/hostname")),
        "write_file": lambda c, n: c.write_file(n, "/tmp/x", b"x"),
        "logs": lambda c, n: list(c.logs(n)),
        "console": lambda c, n: c.console(n),
        "terminal": lambda c, n: c.terminal(n).__enter__(),
        "remove_backup_repo": lambda c, n: c.remove_backup_repo(n),
        "set_backup_schedule": lambda c, n: c.set_backup_schedule(n, "1h"),
        "remove_backup_schedule": lambda c, n: c.remove_backup_schedule(n),
        "where": lambda c, n: c.where(n),
        "unplace": lambda c, n: c.unplace(n, "h1"),
        "moved": lambda c, n: c.moved(n, "h1"),
        "send_vm": lambda c, n: c.send_vm(n, "h1"),
        "mark_host": lambda c, n: c.mark_host(n, "ready"),
    }


def test_sdk_table_names_every_method_with_a_name(tmp_path: Path) -> None:
    named = {name for name, f in inspect.getmembers(Client, inspect.isfunction)
             if not name.startswith("_")
             and {"name", "vm", "op_id"} & set(inspect.signature(f).parameters)}
    named -= {"for_host", "create_vm", "fork", "create_template", "create_network",
              "import_vm", "run", "start_run", "add_backup_repo", "create_backup",
              "restore_backup", "list_backups", "place"}  # their names travel in the body or the
    # query, not the path
    assert named <= set(_sdk_calls(tmp_path))


@pytest.mark.parametrize("bad", HOSTILE)
def test_sdk_refuses_names_that_leave_their_segment(tmp_path: Path, bad: str) -> None:
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    with Client() as c:
        c._http = httpx.Client(transport=httpx.MockTransport(transport),
                               base_url="http://vmkitd")
        for method, call in _sdk_calls(tmp_path).items():
            with pytest.raises(InvalidInputError, match="name"):
                call(c, bad)
            assert sent == [], method
    assert list(tmp_path.iterdir()) == []


# --- bodies ------------------------------------------------------------------------------

def test_body_caps() -> None:
    assert body_cap("POST", "/v1/vms") == 4 << 20
    assert body_cap("POST", "/v1/vms/web/exec") == 2 << 20
    assert body_cap("POST", "/v1/vms/web/snapshots") == 64 << 10
    assert body_cap("PUT", "/v1/vms/web/files") is None  # streamed into the guest
    assert body_cap("POST", "/v1/imports") is None  # streamed to disk


def test_oversized_body_is_refused_before_parsing(client: Any, core: FakeCore) -> None:
    body = json.dumps({"name": "web", "user_data": "x" * (5 << 20)})
    msg = assert_error(client.post("/v1/vms", content=body,
                                   headers={"content-type": "application/json"}),
                       413, "too_large")
    assert "4 MiB" in msg
    big_ports = {"name": "web", "ports": ["8080:80"] * 20000}
    assert_error(client.post("/v1/vms/web/snapshots", json=big_ports), 413, "too_large")
    assert core.calls == []


def test_oversized_body_without_length_is_refused(client: Any, core: FakeCore) -> None:
    def chunks() -> Any:  # chunked: no content-length to judge by
        yield b'{"argv": ["cat"], "stdin": "'
        for _ in range(40):
            yield b"A" * (64 << 10)
        yield b'"}'

    r = client.post("/v1/vms/web/exec", content=chunks(),
                    headers={"content-type": "application/json"})
    assert_error(r, 413, "too_large")
    assert core.calls == []


def test_a_body_that_is_not_text_is_a_422(client: Any, core: FakeCore) -> None:
    r = client.post("/v1/templates", content=b"\xff\x1c\xfe",
                    headers={"content-type": "application/json"})
    assert "JSON" in assert_error(r, 422, "invalid_input")


def test_unknown_fields_are_refused(client: Any, core: FakeCore) -> None:
    msg = assert_error(client.post("/v1/vms", json={"name": "web", "qemu_args": ["-s"]}),
                       422, "invalid_input")
    assert "unknown field 'qemu_args'" in msg
    assert_error(client.post("/v1/vms/web/exec", json={"argv": ["true"], "env": {"A": "1"}}),
                 422, "invalid_input")
    assert core.calls == []


def test_empty_network_list_means_no_nic(client: Any, core: FakeCore) -> None:
    client.post("/v1/vms", json={"name": "web", "network": []})
    [(_, spec)] = core.calls
    assert spec.network == "none" and spec.attachments() == ()


def test_long_snapshot_name_gets_vmkits_message(client: Any, core: FakeCore) -> None:
    msg = assert_error(client.post("/v1/vms/web/snapshots", json={"name": "s" * 300}), 422,
                       "invalid_input")
    assert msg.startswith("invalid snapshot name 'ssss") and "1-63 letters" in msg
    assert core.calls == []


def test_405_says_what_is_allowed(client: Any) -> None:
    r = client.put("/v1/vms/web/start")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = client.options("/v1/vms/web/snapshots")  # two routes share this path
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    r = client.put("/v1/vms/web")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PATCH"
    assert r.json() == {"error": "method_not_allowed", "message": "/v1/vms/web does not take "
                        "PUT, only DELETE, GET, PATCH; see /docs for the API"}


# --- exec: stdin and argv ------------------------------------------------------------------

def test_exec_stdin_is_base64_of_any_bytes(client: Any, core: FakeCore) -> None:
    import base64

    data = "é\n".encode()
    client.post("/v1/vms/web/exec", json={"argv": ["cat"],
                                          "stdin": base64.b64encode(data).decode()})
    assert core.calls == [("exec_vm", ("web", ["cat"], data))]


@pytest.mark.parametrize("stdin", ["é", "not base64!", "aGk"])
def test_exec_stdin_not_base64(client: Any, core: FakeCore, stdin: str) -> None:
    msg = assert_error(client.post("/v1/vms/web/exec", json={"argv": ["cat"], "stdin": stdin}),
                       422, "invalid_input")
    assert "base64" in msg
    assert core.calls == []


def test_exec_stdin_too_large(client: Any, core: FakeCore) -> None:
    import base64

    stdin = base64.b64encode(b"x" * ((1 << 20) + 3)).decode()
    r = client.post("/v1/vms/web/exec", json={"argv": ["cat"], "stdin": stdin})
    assert_error(r, 413, "too_large")
    assert "stdin is larger than 1 MiB" in r.json()["message"]
    assert core.calls == []


@pytest.mark.parametrize("argv, word", [
    (["echo", "a\x00b"], "NUL"),
    (["echo", "x" * (129 << 10)], "one argument"),
    (["echo", *["x" * (100 << 10)] * 3], "together"),
    ([], "argv"),
])
def test_exec_argv_refused(client: Any, core: FakeCore, argv: list[str], word: str) -> None:
    r = client.post("/v1/vms/web/exec", json={"argv": argv})
    assert r.status_code in (413, 422)
    assert word in r.json()["message"]
    assert core.calls == []


# --- the schema -----------------------------------------------------------------------------

def test_schema_names_have_their_pattern() -> None:
    doc = _APP.openapi()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert "pattern" in p["schema"], (path, p)
    schemas = doc["components"]["schemas"]
    for path, param in [("/v1/vms/{name}/diff", "from"), ("/v1/imports", "name")]:
        op = next(iter(doc["paths"][path].values()))
        [schema] = [p["schema"] for p in op["parameters"] if p["name"] == param]
        assert "pattern" in str(schema), (path, param)
    for model, field in [("VmCreate", "name"), ("ForkCreate", "name"), ("ForkCreate", "source"),
                         ("TemplateCreate", "name"), ("NetworkCreate", "name")]:
        assert "pattern" in schemas[model]["properties"][field], (model, field)
    assert schemas["VmCreate"]["additionalProperties"] is False

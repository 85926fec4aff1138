"""The API pieces the dashboard needs, on a fake server: the event stream, token auth of
websockets through their subprotocol, the static files served without a token."""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

import pytest

from vmkit.api.app import create_app
from vmkit.core.registry import Registry
from vmkit.errors import NotFoundError
from vmkit.events import Changes

from .fake_server import fake_server

with warnings.catch_warnings():  # starlette's notice about httpx; not ours to fix
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

TOKEN = "s3cret-token_1"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class FakeCore:
    """VM 'a' exists; listing VMs (which the event stream does first) makes 'a' and 'gone'
    change and then the daemon stop, so the stream has a known, finite body."""

    def __init__(self) -> None:
        self.changes = Changes()
        self.guest = _FakeGuest()

    feed = Registry.feed  # the real feed, on this fake's changes and VMs

    def list_vms(self) -> list[dict[str, Any]]:
        self.changes.publish("vm", "a")
        self.changes.publish("snapshots", "a")
        self.changes.publish("vm", "gone")
        self.changes.publish("vm", "a")  # a burst: 'a' is sent once, as it is now
        self.changes.close()
        return [{"name": "a"}]

    def get_vm(self, name: str) -> dict[str, Any]:
        if name != "a":
            raise NotFoundError(f"no VM named {name!r}")
        return {"name": "a", "state": "running"}



class _FakeGuest:
    async def console(self, name: str) -> Any:
        raise NotFoundError(f"no VM named {name!r}")


_CORE = FakeCore()
_APP = create_app(fake_server(_CORE), token=TOKEN, ui_url="http://127.0.0.1:1/ui/")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_APP)


def events(body: str) -> list[tuple[str, Any]]:
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_event_stream_sends_the_list_then_each_change(client: TestClient) -> None:
    r = client.get("/v1/events", headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert events(r.text) == [
        ("vms", [{"name": "a"}]),
        ("vm", {"name": "a", "vm": {"name": "a", "state": "running"}}),
        ("snapshots", {"vm": "a"}),
        ("vm", {"name": "gone", "vm": None}),
    ]


def test_event_stream_needs_the_token(client: TestClient) -> None:
    assert client.get("/v1/events").status_code == 401


def test_changes_from_another_thread_reach_the_stream() -> None:
    import asyncio

    changes = Changes()

    async def main() -> list[tuple[str, str]]:
        with changes.subscribe() as queue:
            worker = threading.Thread(target=changes.publish, args=("vm", "t1"))
            worker.start()
            worker.join()
            return [await queue.get()]

    assert asyncio.run(main()) == [("vm", "t1")]


def test_a_slow_subscriber_is_told_to_reread_everything() -> None:
    import asyncio

    from vmkit.events import OVERFLOW, QUEUE_SIZE

    changes = Changes()

    async def main() -> list[tuple[str, str]]:
        with changes.subscribe() as queue:
            for i in range(QUEUE_SIZE + 1):
                changes.publish("vm", f"vm{i}")
            return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(main()) == [OVERFLOW]


@pytest.mark.parametrize("protocols", [["vmkit", "bearer.wrong"], ["vmkit"], []])
def test_websocket_refuses_a_bad_or_missing_token(client: TestClient,
                                                  protocols: list[str]) -> None:
    with client.websocket_connect("/v1/vms/a/console", subprotocols=protocols) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
    assert closed.value.code == 4401


def test_websocket_takes_the_token_as_a_subprotocol(client: TestClient) -> None:
    with client.websocket_connect("/v1/vms/nope/console",
                                  subprotocols=["vmkit", f"bearer.{TOKEN}"]) as ws:
        assert ws.accepted_subprotocol == "vmkit"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
    assert closed.value.code == 4404  # past the token check: the fake has no such VM


def test_websocket_still_takes_the_header(client: TestClient) -> None:
    with client.websocket_connect("/v1/vms/nope/console", headers=AUTH) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
    assert closed.value.code == 4404


def test_dashboard_files_need_no_token_but_data_does(client: TestClient) -> None:
    page = client.get("/ui/")
    assert page.status_code == 200 and "<html" in page.text
    assert client.get("/ui/app.js").status_code == 200
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    assert client.get("/v1/vms").status_code == 401
    assert client.get("/v1/vms", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/ui/../v1/vms").status_code == 401  # no way around the check


def test_info_tells_the_dashboard_url(client: TestClient) -> None:
    from vmkit.api.app import create_app as make

    class InfoCore(FakeCore):
        def info(self) -> dict[str, Any]:
            return {"home": "/h", "pid": 1, "accel": "tcg", "accel_reason": None, "vms": 0,
                    "images": 0}

    with TestClient(make(fake_server(InfoCore()), ui_url="http://127.0.0.1:1/ui/")) as c:
        assert c.get("/v1/info").json()["ui"] == "http://127.0.0.1:1/ui/"

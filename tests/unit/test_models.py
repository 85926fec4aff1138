"""vmkit.models: what the SDK makes of vmkitd's answers, and the dict-style reads older code
makes of them (deprecated, until vmkit 0.3). Pure logic: answers come from a mock transport."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import vmkit
from vmkit.client import Client, answers
from vmkit.client.answers import Answer, Record
from vmkit.errors import DaemonError, NotFoundError, VmkitError
from vmkit.models import (ApiModel, CloudInit, FileChange, Operation, PortForward, Snapshot,
                          Vm)

VM: dict[str, Any] = {
    "name": "web", "state": "running", "image": "tiny", "cpus": 1, "memory": "256M",
    "memory_mib": 256, "disk": None, "network": "nat", "networks": ["nat"],
    "mac": "52:54:00:12:34:56", "pid": 4242,
    "ports": [{"host_addr": "127.0.0.1", "host_port": 8080, "guest_port": 80, "proto": "tcp"}],
    "auto_remove": False, "disposable": False, "io_iops": None, "io_bps": None,
    "created": 1700000000.25, "started": 1700000001.5, "display": "none", "reason": "",
    "cdrom": None, "firmware": "bios", "ssh_keys": None, "restart": "always",
    "ips": ["10.0.2.15"], "snapshot": "web@snap1",
    "forked_from": None, "cloud_init": {"status": "done", "detail": "provisioned in 12 s"},
}
OPERATION: dict[str, Any] = {
    "id": "op-1", "kind": "image-build", "target": "tiny", "state": "running",
    "progress": 0.5, "message": "installing packages", "error": None, "created": 1.0,
    "updated": 2.0,
}


def vm(**changes: Any) -> Vm:
    return Vm.model_validate({**copy.deepcopy(VM), **changes})


# --- the models ---------------------------------------------------------------------------

def test_a_vm_reads_by_attribute_with_types() -> None:
    v = vm()
    assert (v.name, v.state, v.cpus, v.created) == ("web", "running", 1, 1700000000.25)
    assert v.ports == [PortForward(host_addr="127.0.0.1", host_port=8080, guest_port=80,
                                   proto="tcp")]
    assert isinstance(v.cloud_init, CloudInit) and v.cloud_init.status == "done"


def test_the_json_round_trips_unchanged() -> None:
    """What the server serialises from a model is what it sent before the models were
    shared: the same names, values and order."""
    assert vm().model_dump(mode="json") == VM
    assert list(vm().model_dump(mode="json")) == list(Vm.model_fields)


def test_fields_a_newer_daemon_adds_are_ignored() -> None:
    v = vm(gpu="virtio", ports=[{**VM["ports"][0], "label": "http"}])
    assert "gpu" not in v and "gpu" not in v.model_dump()
    assert v.model_extra is None and v.ports[0].model_dump() == VM["ports"][0]


def test_the_api_does_not_pass_on_keys_its_models_do_not_declare() -> None:
    """The models are the API's response filter: a key a route returns beyond them is not
    sent (extra="ignore"), and the schema does not announce additional properties."""
    assert "internal" not in vm(internal="secret").model_dump(mode="json")
    schema = Vm.model_json_schema()
    assert "additionalProperties" not in schema
    assert "description" not in schema  # docstrings are for help(); the schema has fields'


def test_defaults_fill_what_an_older_daemon_leaves_out() -> None:
    old = {k: v for k, v in VM.items()
           if k not in ("snapshot", "forked_from", "cloud_init", "firmware", "networks")}
    v = Vm.model_validate(old)
    assert (v.snapshot, v.cloud_init, v.firmware, v.networks) == (None, None, "bios", [])


# --- dict-style reads (deprecated) --------------------------------------------------------

def test_dict_style_reads_answer_as_the_dict_did() -> None:
    v = vm()
    assert v["state"] == "running" and v["ports"][0]["host_port"] == 8080
    assert v.get("cloud_init")["status"] == "done"
    assert v.get("cdrom") is None and v.get("cdrom", "-") is None  # present, and None
    assert v.get("no_such_field") is None and v.get("no_such_field", "-") == "-"
    assert "state" in v and "no_such_field" not in v and 42 not in v
    with pytest.raises(KeyError, match="no_such_field"):
        v["no_such_field"]
    with pytest.raises(KeyError):
        v["model_dump"]  # methods are not keys
    assert v.keys() == list(Vm.model_fields) and sorted(v.keys()) == sorted(VM)
    assert {**v}["mac"] == VM["mac"] and dict(v)["name"] == "web"


def test_a_model_equals_the_dict_it_used_to_be() -> None:
    v = vm()
    assert v == VM and VM == v and v != {**VM, "state": "stopped"}
    assert v["ports"] == VM["ports"]  # nested models too
    assert [FileChange(change="added", path="/a", type="file")] == [
        {"change": "added", "path": "/a", "type": "file"}]
    assert v == vm() and v != vm(state="paused") and v != "web"


def test_the_cli_prints_models_as_the_json_the_api_sent(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from vmkit.cli.render import print_json

    print_json([vm(), vm(name="db")])
    assert json.loads(capsys.readouterr().out) == [VM, {**VM, "name": "db"}]
    with pytest.raises(TypeError, match="not JSON serializable"):
        print_json(object())


# --- the client reads answers into models ------------------------------------------------

def test_answers_are_parsed_into_models_and_lists() -> None:
    body = json.dumps([VM, {**VM, "name": "db"}]).encode()
    vms = answers.VMS.read(body, "GET /vms", plain=False)
    assert [type(v) for v in vms] == [Vm, Vm] and vms[1].name == "db"
    image = {"name": "tiny", "digest": "d", "kind": "tiny", "size": 1, "disk": "1G",
             "created": 1.0}
    assert answers.IMAGE.read(json.dumps(image).encode(), "x", plain=False).format == "raw"


def test_every_answer_names_a_model() -> None:
    for name, answer in vars(answers).items():
        if isinstance(answer, Answer) and answer.model is not None:
            assert issubclass(getattr(vmkit, answer.model), ApiModel), name
            assert answer._adapted() is answer._adapted()  # built once


def test_plain_answers_are_records_read_by_key_or_attribute() -> None:
    vms = answers.VMS.read(json.dumps([VM]).encode(), "GET /vms", plain=True)
    assert vms == [VM] and isinstance(vms[0], Record)
    assert (vms[0].state, vms[0]["state"], vms[0].ports[0].guest_port) == ("running",) * 2 + (80,)
    with pytest.raises(AttributeError, match="nothing"):
        vms[0].nothing
    assert answers.SAVED_FILE.make(True, path="/a", bytes=1, sha256="s").path == "/a"


def test_an_answer_the_sdk_cannot_read_says_so() -> None:
    with pytest.raises(DaemonError, match=r"answer to GET /vms/web .* \(state: Input should "
                                          r"be .*\); are vmkit and vmkitd the same version\?"):
        answers.VM.read(json.dumps({**VM, "state": "exploded"}).encode(), "GET /vms/web", False)
    with pytest.raises(DaemonError, match=r"\(0\.cpus: Field required\)"):
        answers.VMS.read(json.dumps([{k: v for k, v in VM.items() if k != "cpus"}]).encode(),
                         "GET /vms", False)
    for plain in (True, False):
        with pytest.raises(DaemonError, match="answer to GET /vms is not what this SDK reads"):
            answers.VMS.read(b"<html>", "GET /vms", plain)


def test_a_plain_client_and_the_cli_never_import_pydantic() -> None:
    """The CLI's client reads answers without pydantic: its import costs a command ~60 ms."""
    script = """
import json, sys, httpx
import vmkit.cli.main
from vmkit.cli import common
c = common.client()
c._http = httpx.Client(transport=httpx.MockTransport(
    lambda r: httpx.Response(200, json=VM)), base_url="http://vmkitd")
assert c.get_vm("web").ports[0].host_port == 8080
assert "pydantic" not in sys.modules, "pydantic was imported"
"""
    subprocess.run([sys.executable, "-c", f"VM = {VM!r}\n{script}"], check=True)


def _client(answer: Callable[[httpx.Request], httpx.Response]) -> Client:
    c = Client()
    c._http = httpx.Client(transport=httpx.MockTransport(answer), base_url="http://vmkitd")
    return c


def test_client_calls_return_models() -> None:
    snap = {"id": "s1", "name": "snap1", "vm": "web", "created": 1.0, "memory": True,
            "paused": False, "size": 10, "parent": None, "current": True, "forks": [],
            "templates": []}
    answers: dict[tuple[str, str], Any] = {
        ("GET", "/v1/vms"): [VM], ("GET", "/v1/vms/web"): VM,
        ("POST", "/v1/vms/web/stop"): {**VM, "state": "stopped", "pid": None},
        ("GET", "/v1/vms/web/snapshots"): [snap],
        ("PUT", "/v1/vms/web/files"): {"bytes": 5},
        ("POST", "/v1/vms/web/capture"): {"vm": "web", "capturing": True},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json=answers[request.method, request.url.path])

    with _client(answer) as c:
        assert c.list_vms() == [vm()] and isinstance(c.list_vms()[0], Vm)
        assert c.get_vm("web").ports[0].guest_port == 80
        stopped = c.stop_vm("web")
        assert (stopped.state, stopped.pid, stopped["state"]) == ("stopped", None, "stopped")
        assert isinstance(c.list_snapshots("web")[0], Snapshot)
        assert c.write_file("web", "/tmp/x", b"hello") == 5
        assert c.start_capture("web").capturing is True
        c.remove_vm("web")  # a 204: nothing to read


def test_wait_operation_hands_models_to_on_progress() -> None:
    states = iter([OPERATION, {**OPERATION, "progress": 1.0, "state": "succeeded"}])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=next(states))

    seen: list[Operation] = []
    with _client(answer) as c:
        done = c.wait_operation("op-1", seen.append, interval=0)
    assert [op.progress for op in seen] == [0.5, 1.0] and done.state == "succeeded"
    assert seen[0]["message"] == "installing packages"  # the CLI's progress bar reads this


def test_a_failed_operation_raises_its_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**OPERATION, "state": "failed", "error": "no space"})

    with _client(answer) as c, pytest.raises(VmkitError, match="no space"):
        c.wait_operation("op-1", interval=0)


def test_error_answers_still_raise_their_class() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "not_found", "message": "no VM 'x'"})

    with _client(answer) as c, pytest.raises(NotFoundError, match="no VM 'x'"):
        c.get_vm("x")


def test_every_model_shares_the_base() -> None:
    for name in ("Vm", "Image", "Snapshot", "Operation", "Template", "Network", "VmStats",
                 "HostInfo", "VncDisplay", "FileChange", "PortForward", "CloudInit", "Capture",
                 "SavedFile", "ExportedFile"):
        assert issubclass(getattr(vmkit, name), ApiModel), name

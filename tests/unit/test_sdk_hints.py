"""Messages name the CLI's commands; the SDK names its own calls beside them (client/hints.py).
The guard: every 'vmkit ...' that code outside the CLI can put in a message is a command the
hints know (with the Client's call, or None where the SDK has none)."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest

import vmkit
from vmkit.client.hints import _MENTION, COMMANDS, command_of, with_sdk_calls

SRC = Path(vmkit.__file__).parent


def _strings(tree: ast.AST) -> list[str]:
    """Every string in ``tree`` but docstrings; an f-string's fields read as {}."""
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if id(node) in bare:
            continue
        if isinstance(node, ast.JoinedStr):
            found.append("".join(v.value if isinstance(v, ast.Constant) else "{}"
                                 for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
    return found


def _mentions() -> list[tuple[str, str]]:
    return [(str(path.relative_to(SRC)), m.group(1))
            for path in sorted(SRC.rglob("*.py"))
            if "cli" not in path.parts and path.name != "hints.py"
            for text in _strings(ast.parse(path.read_text()))
            for m in _MENTION.finditer(text)]


def test_every_command_a_message_names_is_known_to_the_sdk_hints() -> None:
    mentions = _mentions()
    assert len(mentions) > 40  # the search finds them (state.py's hints among them)
    unknown = [f"{path}: 'vmkit {text}'" for path, text in mentions if command_of(text) is None]
    assert not unknown, ("add these to COMMANDS in vmkit/client/hints.py, with the Client "
                         f"call that does it (or None): {unknown}")


def test_every_call_named_is_the_clients() -> None:
    calls = [c for v in COMMANDS.values() if v for c in v.split(" / ")]
    assert [c for c in calls if not callable(getattr(vmkit.Client, c, None))] == []


@pytest.mark.parametrize("message,out", [
    ("no VM named 'x'; 'vmkit ls' lists them",
     "no VM named 'x'; 'vmkit ls' / Client.list_vms() lists them"),
    ("stop it first with 'vmkit stop web', or remove it at once with 'vmkit rm -f web'",
     ("stop it first with 'vmkit stop web' / Client.stop_vm(), or remove it at once with "
      "'vmkit rm -f web' / Client.remove_vm()")),
    ("'vmkit --host lab rm'", "'vmkit --host lab rm' / Client.remove_vm()"),
    ("stop it ('vmkit capture web --stop -o FILE')",
     "stop it ('vmkit capture web --stop -o FILE' / Client.stop_capture())"),
    ("'vmkit net create lab' first", "'vmkit net create lab' / Client.create_network() first"),
    ("'vmkit cp a b'", "'vmkit cp a b' / Client.read_file() / Client.write_file()"),
    ("'vmkit ssh -i KEY' still works", "'vmkit ssh -i KEY' still works"),  # no SDK call
    ("nothing to say", "nothing to say"),
])
def test_hints_name_the_clients_call_beside_the_command(message: str, out: str) -> None:
    assert with_sdk_calls(message) == out


@pytest.mark.parametrize("plain,hint", [(False, True), (True, False)])
def test_sdk_errors_carry_the_call_and_the_clis_do_not(plain: bool, hint: bool) -> None:
    body = {"error": "invalid_state", "message": "VM web is stopped; start it with "
                                                 "'vmkit start web'"}
    client = vmkit.Client(url="http://vmkitd.test", plain=plain)
    client._http = httpx.Client(base_url="http://vmkitd.test", transport=httpx.MockTransport(
        lambda request: httpx.Response(409, json=body)))
    with client, pytest.raises(vmkit.InvalidStateError) as e:
        client.pause_vm("web")
    assert e.value.message.endswith("'vmkit start web'" + " / Client.start_vm()" * hint)

"""What the CLI prints: inspect -f templates, the IP column, console logs as text, help."""

from __future__ import annotations

from typing import Any

import pytest

from vmkit.cli import logtext, render
from vmkit.core.addresses import guest_addresses
from vmkit.errors import InvalidInputError

VM: dict[str, Any] = {"name": "web", "state": "running", "pid": 42, "auto_remove": False,
                      "disk": None, "ips": ["10.0.2.15", "fec0::5054:ff:fe12:3456"],
                      "ports": [{"host_port": 8080, "guest_port": 80}]}


@pytest.mark.parametrize("fmt,out", [
    ("{{.state}}", "running"),
    ("{{ .name }}: {{.pid}}", "web: 42"),
    ("{{.ips.0}}", "10.0.2.15"),
    ("{{.ports.0.host_port}}->{{.ports.0.guest_port}}", "8080->80"),
    ("{{json .ports}}", '[{"host_port": 8080, "guest_port": 80}]'),
    ("{{.ips}}", '["10.0.2.15", "fec0::5054:ff:fe12:3456"]'),
    ("{{.auto_remove}} {{.disk}}|", "false |"),
    ("{{json .name}}", '"web"'),
    ("plain text", "plain text"),
])
def test_inspect_format(fmt: str, out: str) -> None:
    assert render.template(fmt, VM) == out


@pytest.mark.parametrize("fmt,word", [("{{.nope}}", "fields there: auto_remove, disk"),
                                      ("{{.ips.5}}", "the list has 2 items"),
                                      ("{{.State.Status", "cannot read the format"),
                                      ("{{index .ips 0}}", "cannot read the format")])
def test_inspect_format_mistakes(fmt: str, word: str) -> None:
    with pytest.raises(InvalidInputError, match=word):
        render.template(fmt, VM)


def test_the_ip_column_prefers_ipv4() -> None:
    assert render.address(VM) == "10.0.2.15"
    assert render.address({"ips": ["fec0::1"]}) == "fec0::1"
    assert render.address({"ips": []}) == render.address({}) == "-"


def test_guest_addresses_leave_out_loopback_and_link_local() -> None:
    nics = [{"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1"}]},
            {"name": "eth0", "ip-addresses": [{"ip-address": "10.0.2.15"},
                                              {"ip-address": "fe80::1"}]},
            {"name": "eth1"}, "junk", {"name": "eth2", "ip-addresses": [{"ip-address": "::1"},
                                                                       {"x": 1}]}]
    assert guest_addresses(nics) == ["10.0.2.15"]
    assert guest_addresses(None) == []


def test_console_escapes_go_even_split_between_chunks() -> None:
    raw = b"\x1b[1;32mok\x1b[0m\r\nroot@web:/# \x1b[6n\x1b]0;title\x07done\x1b(B\r\n\x00"
    for cut in range(len(raw) + 1):
        assert b"".join(logtext.clean([raw[:cut], raw[cut:]])) == b"ok\nroot@web:/# done\n"


def test_a_lone_escape_that_never_ends_is_let_out() -> None:
    data = b"\x1b[" + b"1" * (logtext.MAX_SEQUENCE + 10)
    assert b"1" * logtext.MAX_SEQUENCE in b"".join(logtext.clean([data]))


def test_every_command_has_an_example() -> None:
    from vmkit.cli import main
    from vmkit.cli.registry import COMMANDS

    main.build_app()
    missing = [f"{c.group} {c.name}".strip() for c in COMMANDS
               if "Example" not in (c.function.__doc__ or "")]
    assert missing == []

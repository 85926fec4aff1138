"""Driving another vmkit host: its token, registering it (over TLS too), --host NAME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import free_port
from .test_cli import fails, ok


def test_register_and_drive_another_host(own_daemon) -> None:
    port = free_port()
    here = own_daemon()
    there = own_daemon(args=("--listen", f"127.0.0.1:{port}"))
    token = ok(there, "host", "token").strip()
    assert token == (there.home / "run" / "token").read_text().strip()
    url = f"http://127.0.0.1:{port}"

    fails(here, "host", "add", "lab", url, "--token", "wrong", match="refused the token")
    fails(here, "host", "add", "lab", f"http://127.0.0.1:{free_port()}", "--token", token,
          match="cannot reach vmkitd")
    fails(here, "host", "add", "lab", "127.0.0.1:80", "--token", token, match="use http")
    fails(here, "--host", "lab", "ls", match="no host named 'lab'")
    assert ok(here, "host", "add", "lab", url, "--token", token).strip() == "lab"
    listed = ok(here, "host", "ls")
    assert "lab" in listed and url in listed and token not in listed
    assert json.loads(ok(here, "host", "ls", "--json")) == [{"name": "lab", "url": url, "ca": None}]
    fails(here, "--host", "lab", "host", "token", match="only on that host")

    assert ok(here, "--host", "lab", "run", "-d", "-n", "far1", "--network", "none").strip() == "far1"
    assert ok(there, "ls", "-q") == "far1\n"  # it runs there
    assert ok(here, "ls", "-q") == ""  # and not here
    assert ok(here, "--host", "lab", "exec", "far1", "--", "hostname") == "far1\n"
    ok(here, "--host", "lab", "rm", "-f", "far1")
    assert ok(there, "ls", "-q") == ""
    ok(here, "host", "rm", "lab")
    fails(here, "host", "rm", "lab", match="no host named 'lab'")


def test_a_host_over_tls(own_daemon, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(key_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    port = free_port()
    there = own_daemon(args=("--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert_pem),
                             "--tls-key", str(key_pem)))
    here = own_daemon()
    token = ok(there, "host", "token").strip()
    url = f"https://127.0.0.1:{port}"
    fails(here, "host", "add", "tls", url, "--token", token, match="CERTIFICATE_VERIFY_FAILED")
    fails(here, "host", "add", "tls", url.replace("https", "http"), "--token", token,
          match="vmkitd")
    ok(here, "host", "add", "tls", url, "--token", token, "--ca", str(ca_pem))
    info = json.loads(ok(here, "--host", "tls", "info", "--json"))
    assert info["home"] == str(there.home)

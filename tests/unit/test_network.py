"""network.py: QEMU's port-forward failure in vmkit's words."""

from __future__ import annotations

from vmkit.errors import ConflictError, LaunchError
from vmkit.networks.ports import explain_launch_error


def test_a_port_taken_at_start_is_a_conflict() -> None:
    raw = LaunchError("QEMU exited at start (code 1): qemu-system-x86_64: -netdev user,id=n0,"
                      "restrict=on,hostfwd=tcp:127.0.0.1:8080-:80: Could not set up host "
                      "forwarding rule 'tcp:127.0.0.1:8080-:80'")
    err = explain_launch_error(raw)
    assert isinstance(err, ConflictError)
    assert err.message.startswith("host port 127.0.0.1:8080/tcp was taken")
    assert "-p 8081:80" in err.message and "Could not" not in err.message


def test_other_launch_errors_pass_through() -> None:
    raw = LaunchError("QEMU exited at start (code 1): no such machine")
    assert explain_launch_error(raw) is raw

"""--display vnc: the spec field, its check, and QEMU's VNC server on the VM's socket."""

from __future__ import annotations

import pytest

from vmkit.errors import InvalidInputError
from vmkit.spec import VmSpec, check_spec, make_spec

from .test_argv import PATHS, argv_for, one


def test_no_display_by_default() -> None:
    spec = make_spec("a")
    assert spec.display == "none"
    assert "-vnc" not in argv_for(spec)
    assert one(argv_for(spec), "-display") == "none"


def test_vnc_listens_on_the_vms_socket_with_a_password() -> None:
    argv = argv_for(make_spec("a", display="vnc"))
    assert one(argv, "-vnc") == f"unix:{PATHS.vnc},password=on"


def test_an_unknown_display_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="use none or vnc"):
        make_spec("a", display="sdl")


def test_the_display_survives_a_spec_round_trip() -> None:
    spec = make_spec("a", display="vnc")
    assert check_spec(spec.to_json()).display == "vnc"
    old = {k: v for k, v in spec.to_json().items() if k != "display"}  # saved before it existed
    assert VmSpec.from_json(old).display == "none"

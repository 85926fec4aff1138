"""errors.py: HTTP statuses and the body round trip between daemon and client."""

from __future__ import annotations

import pytest

from vmkit import errors
from vmkit.errors import (AgentError, ClusterError, ConflictError, DaemonError, HostError, ImageError,
                          NoSpaceError,
                          InvalidInputError, InvalidStateError, LaunchError, NotFoundError,
                          MigrationError, QmpError, TooLargeError, UnauthorizedError, VmkitError, error_from_body,
                          to_body)

STATUS = {
    InvalidInputError: (422, "invalid_input"),
    TooLargeError: (413, "too_large"),
    UnauthorizedError: (401, "unauthorized"),
    NotFoundError: (404, "not_found"),
    ConflictError: (409, "conflict"),
    InvalidStateError: (409, "invalid_state"),
    HostError: (500, "host"),
    NoSpaceError: (507, "no_space"),
    ImageError: (409, "image"),
    LaunchError: (500, "launch"),
    QmpError: (500, "qmp"),
    AgentError: (502, "agent"),
    MigrationError: (502, "migration"),
    DaemonError: (503, "daemon"),
    ClusterError: (503, "cluster"),
}
CLASSES = list(STATUS)


def test_all_error_classes_are_listed() -> None:
    found = {obj for obj in vars(errors).values()
             if isinstance(obj, type) and issubclass(obj, VmkitError) and obj is not VmkitError}
    assert found == set(CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_status_and_kind(cls: type[VmkitError]) -> None:
    assert (cls.status, cls.kind) == STATUS[cls]
    assert issubclass(cls, VmkitError)


def test_kinds_are_unique() -> None:
    kinds = [cls.kind for cls in CLASSES]
    assert len(set(kinds)) == len(kinds)


def test_invalid_state_is_a_conflict() -> None:
    assert issubclass(InvalidStateError, ConflictError)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_body_round_trip(cls: type[VmkitError]) -> None:
    err = cls("VM web is stopped; do something")
    body = to_body(err)
    assert body == {"error": cls.kind, "message": "VM web is stopped; do something"}
    back = error_from_body(body)
    assert type(back) is cls
    assert back.message == err.message
    assert str(back) == err.message
    assert back.status == cls.status


def test_message_attribute_and_str() -> None:
    err = NotFoundError("no VM named 'x'")
    assert err.message == str(err) == "no VM named 'x'"


@pytest.mark.parametrize("body", [
    {"error": "something_new", "message": "m"},
    {"message": "m"},
])
def test_unknown_kind_gives_base_error(body: dict[str, str]) -> None:
    err = error_from_body(body)
    assert type(err) is VmkitError
    assert err.status == 500
    assert err.message == body["message"]


def test_missing_message() -> None:
    err = error_from_body({"error": "not_found"})
    assert type(err) is NotFoundError
    assert err.message == "unknown error"


def test_a_field_named_like_where_it_was_sent_keeps_its_name() -> None:
    from vmkit.api.errors import validation_message

    assert validation_message({"loc": ("body", "path"), "type": "extra_forbidden",
                               "msg": "Extra inputs are not permitted"}).startswith(
        "unknown field 'path'")
    assert validation_message({"loc": ("query", "limit"), "type": "int_parsing",
                               "msg": "Input should be a valid integer"}) == (
        "limit: Input should be a valid integer")

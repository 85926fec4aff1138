"""The names ``import vmkit`` promises, and that each one is really there."""

from __future__ import annotations

import importlib

import vmkit

EXPECTED = {
    "Client", "ExecResult", "VmkitError", "InvalidInputError", "NotFoundError", "ConflictError",
    "InvalidStateError", "HostError", "ImageError", "LaunchError", "QmpError", "AgentError",
    "DaemonError", "UnauthorizedError", "NoSpaceError", "TooLargeError", "MigrationError",
    "__version__",
}


def test_all() -> None:
    assert set(vmkit.__all__) == EXPECTED
    assert len(vmkit.__all__) == len(EXPECTED)  # no duplicates


def test_each_name_importable() -> None:
    module = importlib.import_module("vmkit")
    for name in vmkit.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from vmkit import *", namespace)
    assert EXPECTED <= set(namespace)


def test_errors_are_the_same_classes() -> None:
    from vmkit import errors

    for name in EXPECTED - {"Client", "ExecResult", "__version__"}:
        cls = getattr(vmkit, name)
        assert cls is getattr(errors, name)
        assert issubclass(cls, vmkit.VmkitError)


def test_version() -> None:
    from importlib.metadata import version

    assert vmkit.__version__ == version("vmkit")

"""The names ``import vmkit`` promises, and that each one is really there."""

from __future__ import annotations

import importlib

import vmkit

MODELS = {
    "Vm", "PortForward", "CloudInit", "Image", "Operation", "Snapshot", "Template", "Network",
    "VmStats", "FileChange", "VncDisplay", "HostInfo", "Capture", "SavedFile", "ExportedFile",
}
EXPECTED = {
    "Client", "ExecResult", "VmkitError", "InvalidInputError", "NotFoundError", "ConflictError",
    "InvalidStateError", "HostError", "ImageError", "LaunchError", "QmpError", "AgentError",
    "DaemonError", "UnauthorizedError", "NoSpaceError", "TooLargeError", "MigrationError",
    "__version__", *MODELS,
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

    for name in EXPECTED - MODELS - {"Client", "ExecResult", "__version__"}:
        cls = getattr(vmkit, name)
        assert cls is getattr(errors, name)
        assert issubclass(cls, vmkit.VmkitError)


def test_models_are_the_shared_ones() -> None:
    """The SDK's models are vmkit.models' classes, which the API declares as its responses."""
    from vmkit import models
    from vmkit.api import models as api_models

    for name in MODELS:
        cls = getattr(vmkit, name)
        assert cls is getattr(models, name)
        assert issubclass(cls, models.ApiModel)
        if hasattr(api_models, name):
            assert getattr(api_models, name) is cls


def test_every_client_call_returns_a_model_or_nothing() -> None:
    """No public Client method is annotated as returning a dict any more."""
    import inspect

    for name, f in inspect.getmembers(vmkit.Client, inspect.isfunction):
        if not name.startswith("_"):
            returns = str(inspect.signature(f).return_annotation)
            assert "dict" not in returns, (name, returns)
            assert f.__doc__, f"Client.{name} has no docstring"
    assert vmkit.Client.__doc__ and "with vmkit.Client() as c:" in vmkit.Client.__doc__


def test_importing_vmkit_imports_neither_httpx_nor_pydantic() -> None:
    """The errors are cheap to import: the daemon and the CLI's fast paths rely on it."""
    import subprocess
    import sys

    code = ("import sys, vmkit; vmkit.VmkitError; "
            "print(sorted({'httpx', 'pydantic', 'vmkit.models'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_version() -> None:
    from importlib.metadata import version

    assert vmkit.__version__ == version("vmkit")

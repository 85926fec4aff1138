"""A Server for API tests: a fake core, fakes of the services a test reaches, and for every
other service one that fails the test at its first use."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from vmkit.errors import NotFoundError
from vmkit.server import Server


class Unreachable:
    """A service the test must not reach: any use of it fails the test loudly."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        raise AssertionError(f"the request reached server.{self._name}.{attr}, which this "
                             "test does not expect")


def fake_server(core: object, **services: object) -> Server:
    """A Server whose core is ``core`` and whose services are ``services`` (by field name:
    snapshots=..., networks=...); the others are Unreachable."""
    names = {f.name for f in dataclasses.fields(Server)} - {"core"}
    if unknown := set(services) - names:
        raise TypeError(f"Server has no service {unknown}")
    given: dict[str, Any] = {name: services.get(name, Unreachable(name)) for name in names}
    given["cluster"] = services.get("cluster")  # None: a vmkitd in no cluster
    return Server(core=cast(Any, core), **given)  # the fakes stand in for the real types


class Recording:
    """A service that records each call, then refuses it as a service does a missing VM
    (before any await, so sync and async methods alike)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((attr, args, kwargs))
            raise NotFoundError(f"the fake {attr} found nothing")

        return call

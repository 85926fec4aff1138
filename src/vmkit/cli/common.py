"""What every command shares: this invocation's state (``--home``, ``--host``, the SDK
client) and how commands report on stdout.

Imported at startup, so it imports nothing heavy: the SDK is imported when ``client()``
first makes one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..client import Client
    from ..paths import HomePaths


class State:
    home: Path | None = None
    host: str | None = None  # --host: another vmkit host, by its registered name
    cluster: str | None = None  # --cluster: the cluster through this registered member
    client: Client | None = None
    error_exit = 1  # exit status for vmkit's own errors; exec makes it 125


state = State()


def client() -> Client:
    """The SDK client for this invocation, made on first use (vmkitd is started if needed)."""
    if state.client is None:
        from ..client import Client

        if state.cluster:
            from ..client.routing import ClusterClient

            state.client = ClusterClient.for_host(state.cluster, home=state.home, plain=True)
        elif state.host:
            state.client = Client.for_host(state.host, home=state.home, plain=True)
        else:  # plain: answers as dicts, without importing pydantic (~60 ms a command)
            state.client = Client(home=state.home, autostart=True, plain=True)
    return state.client


def home_paths() -> HomePaths:
    """The files of this host's vmkit home (``--home``), e.g. the registered hosts."""
    from ..paths import HomePaths, default_home

    return HomePaths(state.home or default_home())


def complete_vm(incomplete: str) -> list[str]:
    """The local VMs' names that start with ``incomplete``, for shell completion (Tab):
    asked of a running vmkitd over its socket, never starting one; none if there is none."""
    from .local import get_json

    try:
        vms = get_json(home_paths().socket, "/v1/vms") or []
    except Exception:  # noqa: BLE001 - a completion must never print an error
        return []
    return [vm["name"] for vm in vms if vm["name"].startswith(incomplete)]


def say(line: str) -> None:
    """Print a result line on stdout, at once (scripts read it while vmkit goes on)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def each(names: list[str], action: Callable[[str], Any]) -> None:
    """Apply ``action`` to every name, printing each that succeeds; report failures and go
    on with the others, then exit 1 if any failed."""
    from ..errors import DaemonError, VmkitError

    failed = False
    for name in names:
        try:
            action(name)
        except DaemonError:
            raise  # no daemon: every other name would fail the same way
        except VmkitError as e:
            from .render import error

            error(e.message)
            failed = True
        else:
            say(name)
    if failed:
        raise SystemExit(1)


def time_now() -> float:
    import time

    return time.time()

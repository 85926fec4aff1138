"""The cluster as an operator sees it: every host ever joined, with its state (ready,
cordoned, draining, down), capacity and use, read from etcd in one pass."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidInputError, NotFoundError
from . import keys
from .etcd import Etcd

MARKS = ("ready", "cordoned", "draining")


def host_state(alive: bool, marked: str | None) -> str:
    """A host is down when its lease is gone, whatever an operator marked it."""
    if not alive:
        return "down"
    return marked if marked in ("cordoned", "draining") else "ready"


async def hosts(etcd: Etcd) -> list[dict[str, Any]]:
    """Every member, by name: its facts if it is up, its state in any case."""
    every = await etcd.range(keys.ROOT)
    found: list[dict[str, Any]] = []
    for key, value in every.items():
        if not key.startswith(keys.MEMBERS):
            continue
        name = key.removeprefix(keys.MEMBERS)
        facts = every.get(keys.alive(name))
        marked = every.get(keys.state(name))
        record = {"name": name, **json.loads(value), **(json.loads(facts) if facts else {})}
        record["state"] = host_state(facts is not None, marked.decode() if marked else None)
        found.append(record)
    return found


async def mark(etcd: Etcd, name: str, state: str) -> None:
    """Mark host ``name`` ready, cordoned (takes no new VMs) or draining."""
    if state not in MARKS:
        raise InvalidInputError(f"host state {state!r}: use one of {', '.join(MARKS)}")
    if await etcd.get(keys.member(name)) is None:
        raise NotFoundError(f"no host named {name} in the cluster ('vmkit cluster hosts' "
                            "lists them)")
    if state == "ready":
        await etcd.delete(keys.state(name))
    else:
        await etcd.put(keys.state(name), state)

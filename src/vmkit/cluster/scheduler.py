"""Which host a new VM goes to, as Nova's filter scheduler decides: filters drop the hosts
that cannot take it (each with its reason), weights rank those left. Pure: placement.py
feeds it what etcd holds.

Capacity counts every VM in the cluster's index, running or not (as Nova keeps a stopped
instance's allocation), and at least what the host reports its running VMs use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConflictError
from .index import Entry

CPU_RATIO = 4.0  # vCPUs per host CPU (Nova's default cpu_allocation_ratio is 4.0)
MEMORY_RATIO = 1.0  # memory is not overcommitted: a guest that is swapped out crawls


@dataclass(frozen=True)
class Request:
    """What the new VM needs, and the rules it comes with."""

    cpus: int
    memory_mib: int
    image: str | None
    group: str | None = None
    policy: str | None = None  # "spread" (anti-affinity) or "pack" (affinity) with group
    pin: str | None = None  # --host NAME
    away_from: str | None = None  # a host being drained
    qemu: str | None = None  # the QEMU a migrating VM runs on: the new host's must be as new


@dataclass(frozen=True)
class Choice:
    host: str
    why: dict[str, str]  # every host: why it was chosen, or why not


def choose(hosts: list[dict[str, Any]], index: dict[str, Entry], req: Request) -> Choice:
    """The best host for ``req``; a ConflictError whose one line says why none fits."""
    why: dict[str, str] = {}
    fits: list[dict[str, Any]] = []
    shippable = req.image is None or any(req.image in dict(h.get("images") or [])
                                         for h in hosts if h["state"] != "down")
    for host in hosts:
        reason = _refusal(host, index, req, shippable)
        if reason:
            why[host["name"]] = reason
        else:
            fits.append(host)
    if not fits:
        refused = "; ".join(f"{name}: {reason}" for name, reason in sorted(why.items()))
        raise ConflictError(f"no host can take this VM ({refused or 'the cluster has no hosts'})")
    best = max(fits, key=lambda h: (_group_count(h["name"], index, req) * _pack_sign(req),
                                    _free_memory(h, index), h["name"] == req.pin,
                                    [-ord(c) for c in h["name"]]))
    for host in fits:
        free = _free_memory(host, index)
        why[host["name"]] = (f"chosen: most free memory ({free} MiB)" if host is best
                             else f"fits, less free memory ({free} MiB)")
    if req.image and req.image not in dict(best.get("images") or []):
        why[best["name"]] += f"; image {req.image} is shipped there"
    return Choice(best["name"], why)


def _refusal(host: dict[str, Any], index: dict[str, Entry], req: Request,
             shippable: bool) -> str | None:
    name = host["name"]
    if req.pin and name != req.pin:
        return f"not the host asked for (--host {req.pin})"
    if name == req.away_from:
        return "being drained"
    if host["state"] != "ready":
        return str(host["state"])
    if req.image and req.image not in dict(host.get("images") or []) and not shippable:
        return f"no host has image {req.image}"
    if req.qemu and _version(host.get("qemu_version")) < _version(req.qemu):
        return f"QEMU {host.get('qemu_version')} is older than {req.qemu}"
    free = _free_memory(host, index)
    if free < req.memory_mib:
        return f"{free} MiB of memory free, {req.memory_mib} MiB needed"
    cpus_free = int(host.get("cpus", 0) * CPU_RATIO) - _used(host, index, "cpus")
    if cpus_free < req.cpus:
        return f"{cpus_free} vCPUs free (at {CPU_RATIO:g} per CPU), {req.cpus} needed"
    count = _group_count(name, index, req)
    if req.policy == "spread" and count:
        return f"has a VM of group {req.group} (--spread)"
    if req.policy == "pack" and not count and _group_hosts(index, req) - {req.away_from}:
        return f"group {req.group} is on {', '.join(sorted(_group_hosts(index, req)))} (--pack)"
    return None


def used_memory(host: dict[str, Any], index: dict[str, Entry]) -> int:
    """Memory reserved on ``host``: its VMs' in the index, or what it reports, if more."""
    return _used(host, index, "memory_mib")


def _used(host: dict[str, Any], index: dict[str, Entry], what: str) -> int:
    reserved = sum(getattr(e, what) for e in index.values() if e.host == host["name"])
    reported = host.get("memory_used_mib" if what == "memory_mib" else "cpus_used") or 0
    return max(int(reserved), int(reported))


def _free_memory(host: dict[str, Any], index: dict[str, Entry]) -> int:
    return int((host.get("memory_mib") or 0) * MEMORY_RATIO) - used_memory(host, index)


def _group_count(name: str, index: dict[str, Entry], req: Request) -> int:
    if not req.group:
        return 0
    return sum(1 for e in index.values() if e.group == req.group and e.host == name)


def _group_hosts(index: dict[str, Entry], req: Request) -> set[str]:
    return {e.host for e in index.values() if req.group and e.group == req.group}


def _pack_sign(req: Request) -> int:
    return 1 if req.policy == "pack" else -1


def _version(text: str | None) -> tuple[int, ...]:
    parts = (text or "0").split(".")
    return tuple(int(p) for p in parts if p.isdigit())

"""The cluster this vmkitd is a member of (``vmkitd --cluster``): its hosts, every VM on
every host, where one VM lives (any member passes a VM's own calls on to it: api/forward.py;
the SDK's ``ClusterClient`` goes there directly), placing a new VM, cordoning hosts, and the
calls between members (image shipping, cold moves)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool

from ...cluster import index, placement, view
from ...cluster.membership import Membership
from ...cluster.scheduler import Request
from ...errors import InvalidInputError, InvalidStateError, NotFoundError, VmkitError
from ...models import ClusterHost, ClusterVm, Placement
from ...server import Server
from ...spec import check_memory, validate_name
from ..params import ImageName, NamePath, VmName

HostName = Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")]


class PlacementAsk(BaseModel):
    name: str | None = None
    image: str | None = "tiny"
    cpus: int = Field(1, ge=1, le=64)
    memory: str = "256M"
    group: str | None = None
    policy: Literal["spread", "pack"] | None = None
    host: str | None = None  # pin
    away_from: str | None = None  # drain: not this host
    qemu: str | None = None  # drain: at least this QEMU


class HostMark(BaseModel):
    state: Literal["ready", "cordoned", "draining"]


class MoveTo(BaseModel):
    host: HostName


class SendTo(BaseModel):
    host: HostName


def router(server: Server) -> APIRouter:
    api = APIRouter()

    def member() -> Membership:
        if server.cluster is None:
            raise InvalidStateError("this vmkitd is in no cluster: start it with "
                                    "'vmkitd --cluster URL --listen ADDR:PORT'")
        return server.cluster

    @api.get("/v1/cluster/hosts", response_model=list[ClusterHost])
    async def cluster_hosts() -> list[dict[str, Any]]:
        """Every host that joined the cluster, with its state (ready, cordoned, draining,
        down), capacity and use."""
        return await view.hosts(member().etcd)

    @api.put("/v1/cluster/hosts/{name}/state", status_code=204)
    async def mark_host(name: Annotated[str, NamePath], body: HostMark) -> None:
        """Cordon a host (it takes no new VMs), mark it draining, or make it ready again."""
        await view.mark(member().etcd, validate_name(name, "host"), body.state)

    @api.get("/v1/cluster/vms", response_model=list[ClusterVm])
    async def cluster_vms() -> list[dict[str, Any]]:
        """Every VM on every host that is up, with its host."""
        me = member()
        up = [h for h in await view.hosts(me.etcd) if h["state"] != "down"]
        found = await asyncio.gather(*(placement.call(me.peer, h["url"], "GET", "/vms")
                                       for h in up), return_exceptions=True)
        vms: list[dict[str, Any]] = []
        for host, answer in zip(up, found):
            if isinstance(answer, VmkitError):
                continue  # it went down since its lease was read
            if isinstance(answer, BaseException):
                raise answer
            vms.extend({**vm, "host": host["name"]} for vm in answer)
        return sorted(vms, key=lambda vm: (vm["name"], vm["host"]))

    @api.get("/v1/cluster/vms/{name}", response_model=Placement)
    async def where(name: VmName) -> dict[str, Any]:
        """The host VM ``name`` lives on: send the VM's own calls to its ``url``."""
        me = member()
        entry = await index.lookup(me.etcd, name)
        if entry is None:
            raise NotFoundError(f"no VM named {name} in the cluster ('vmkit --cluster NAME "
                                "ls' lists them)")
        return await _placement(me, name, entry.host, entry.why)

    @api.put("/v1/cluster/vms/{name}/host", status_code=204)
    async def moved(name: VmName, body: MoveTo) -> None:
        """(After a migration) record that VM ``name`` now lives on ``host``."""
        await index.move(member().etcd, name, body.host)

    @api.post("/v1/cluster/placements", response_model=Placement, status_code=201)
    async def place(body: PlacementAsk) -> dict[str, Any]:
        """Choose a host for a new VM and reserve its CPUs and memory there (the scheduler:
        filters, then weights; ``why`` says why each host was or was not chosen), and ship
        its image there if it lacks it. Then create the VM on that host's ``url``; if that
        fails, DELETE the placement."""
        me = member()
        name = validate_name(body.name) if body.name else f"vm-{secrets.token_hex(3)}"
        moving = await index.lookup(me.etcd, name) if body.away_from else None
        if body.away_from and (moving is None or moving.host != body.away_from):
            raise NotFoundError(f"VM {name} is not on host {body.away_from}")
        # a VM that moves keeps its group's rule
        group, policy = (moving.group, moving.policy) if moving else (body.group, body.policy)
        req = Request(body.cpus, check_memory(body.memory), body.image, group, policy,
                      body.host, body.away_from, body.qemu)
        _check_group(req)
        choice = await placement.place(me.etcd, name, req)
        try:
            await placement.ensure_image(me.etcd, me.peer, body.image, choice.host)
        except BaseException:
            if body.away_from:  # a move: the VM stays where it was
                await index.move(me.etcd, name, body.away_from)
            else:
                await index.release(me.etcd, name, choice.host)
            raise
        return await _placement(me, name, choice.host, choice.why)

    @api.delete("/v1/cluster/placements/{name}", status_code=204)
    async def unplace(name: VmName, host: Annotated[str, Query()]) -> None:
        """Give back a placement whose VM was not made."""
        await index.release(member().etcd, name, host)

    @api.post("/v1/cluster/vms/{name}/send", status_code=204)
    async def send_vm(name: VmName, body: SendTo) -> None:
        """(Drain) move stopped VM ``name`` to member ``host`` cold: its export (disk and
        spec) is imported there, stopped as it was, then removed here. Place it first."""
        me = member()
        if server.core.get_vm(name)["state"] not in ("stopped", "crashed"):
            raise InvalidStateError(f"VM {name} is not stopped: migrate it (live) instead")
        there = await _placement(me, name, body.host, {})
        export = await server.portable.export(name)
        await placement.call(me.peer, there["url"], "POST", "/imports",
                             content=iterate_in_threadpool(export.chunks),  # reads files
                             headers={"content-type": "application/octet-stream",
                                      "content-length": str(export.length)})
        await server.core.vms.remove(name, False)

    @api.post("/v1/cluster/images/{name}/send", status_code=204)
    async def send_image(name: ImageName, body: SendTo) -> None:
        """(Between members) send this host's image ``name`` to member ``host``."""
        me = member()
        there = await _placement(me, name, body.host, {})
        await placement.send_image(server.core, name, there["url"], me.peer)

    return api


async def _placement(me: Membership, name: str, host: str, why: dict[str, str]
                     ) -> dict[str, Any]:
    hosts = {h["name"]: h for h in await view.hosts(me.etcd)}
    if host not in hosts:
        raise NotFoundError(f"VM {name} is on host {host}, which left the cluster")
    return {"name": name, "host": host, "url": hosts[host]["url"], "why": why}


def _check_group(req: Request) -> None:
    if req.policy and not req.group:
        raise InvalidInputError("--spread and --pack need --group NAME")
    if req.group:
        validate_name(req.group, "group")

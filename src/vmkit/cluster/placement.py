"""Placing a new VM: the scheduler's choice (scheduler.py) on what etcd holds, reserved by a
transaction that fails if any other placement got in first (then: read and choose again),
and the VM's image shipped to the chosen host when it lacks it, from a host that has it.
Also the calls one member makes to another (with the cluster's token).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx

from ..core.core import Core
from ..hosts import answer
from ..errors import ClusterError, HostError, NotFoundError
from ..images.store import FILES
from ..images.transfer import tar_stream
from . import index, view
from .etcd import Etcd
from .scheduler import Choice, Request, choose

RETRIES = 200  # transactions lost to other placements in a row before giving up
PEER_TIMEOUT = 600.0  # an image of a few hundred MiB over a slow link


@dataclass(frozen=True)
class Peer:
    """How a member calls the others: with the cluster's token, checking their API's TLS
    certificates against ``ca`` (vmkitd --cluster-ca), or else the public CAs."""

    token: str
    ca: str | None = None

    def verify(self) -> ssl.SSLContext | bool:
        return _context(self.ca) if self.ca else True


@cache
def _context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


async def place(etcd: Etcd, name: str, req: Request) -> Choice:
    """Choose a host for VM ``name`` (new, or moving away from ``req.away_from``) and
    reserve ``req`` there, atomically."""
    for _ in range(RETRIES):
        hosts = await view.hosts(etcd)
        if req.pin and req.pin not in {h["name"] for h in hosts}:
            raise NotFoundError(f"no host named {req.pin} in the cluster ('vmkit cluster "
                                "hosts' lists them)")
        entries, revision = await index.entries(etcd)
        choice = choose(hosts, entries, req)
        entry = index.Entry(choice.host, req.cpus, req.memory_mib, req.image, req.group,
                            choice.why, req.policy, time.time())
        if await index.reserve(etcd, name, entry, revision, new=req.away_from is None):
            return choice
        await asyncio.sleep(random.uniform(0.01, 0.1))  # another placement won: again
    raise ClusterError(f"placing {name} lost {RETRIES} races with other placements: try again")


async def ensure_image(etcd: Etcd, peer: Peer, image: str | None, host: str) -> None:
    """Have ``host`` hold ``image``: a host that has it sends it (content-addressed: the
    receiver checks the digest; the image is never rebuilt)."""
    hosts = {h["name"]: h for h in await view.hosts(etcd)}
    if image is None or image in dict(hosts[host].get("images") or []):
        return
    holders = [h for h in hosts.values() if h["state"] != "down"
               and image in dict(h.get("images") or [])]
    if not holders:
        raise NotFoundError(f"no host of the cluster has image {image}: build or import it "
                            "on one ('vmkit --host NAME image build')")
    await call(peer, holders[0]["url"], "POST", f"/cluster/images/{image}/send",
               json={"host": host})


async def send_image(core: Core, name: str, url: str, peer: Peer) -> None:
    """Send this host's image ``name`` to the vmkit host at ``url`` (unless it has it)."""
    try:
        await call(peer, url, "GET", f"/images/{name}")
        return
    except NotFoundError:
        pass
    image = core.images.get(name)
    await call(peer, url, "POST", f"/images/{name}/receive", params={"digest": image.digest},
               content=tar_stream(core.images.verified(image), image.meta.get("files", FILES),
                                  {"kind": image.kind, "meta": image.meta}),
               headers={"content-type": "application/octet-stream"})


async def call(peer: Peer, url: str, method: str, path: str, **kw: Any) -> Any:
    """One request to another member's API; its errors come back as vmkit's errors."""
    async with httpx.AsyncClient(base_url=url + "/v1", trust_env=False, verify=peer.verify(),
                                 headers={"authorization": f"Bearer {peer.token}"},
                                 timeout=httpx.Timeout(30.0, read=PEER_TIMEOUT,
                                                       write=None)) as http:
        try:
            response = await http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise HostError(f"cannot reach the cluster's host at {url}: "
                            f"{e or type(e).__name__}") from None
    return answer(response, url)

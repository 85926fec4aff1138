"""The ``cluster`` group: a demo cluster on this machine (``up``, ``down``) and the hosts of
the cluster a vmkitd belongs to (``hosts``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

from .common import client, home_paths, say, state
from .registry import command, group

if TYPE_CHECKING:
    from pathlib import Path

    import typer

    from ..client.routing import ClusterClient

CLUSTER_HELP = """Many vmkit hosts as one: each 'vmkitd --cluster ETCD-URL --listen ADDR:PORT'
joins the cluster whose shared state lives in that etcd.

[bold]Examples:[/bold]

  sudo vmkit cluster up --hosts 3        # a demo: 3 hosts in network namespaces, as h1..h3
  vmkit --host h1 cluster hosts          # every host: state, capacity, use
  sudo vmkit cluster down                # removes every trace of it
"""

group("cluster", CLUSTER_HELP)


def _base() -> Path:
    return home_paths().root / "clusters"


@command("up", group="cluster")
def cluster_up(
    hosts: Annotated[int, typer.Option("--hosts", min=1, max=9, help="How many hosts.")] = 3,
    name: Annotated[str, typer.Option("--name", help="The cluster's name (1-8 letters and "
                                      "digits).")] = "demo",
    subnet: Annotated[str, typer.Option("--subnet", help="An IPv4 /24 for its network: the "
                                        "bridge is .1, host N is .(10+N).")] = "10.77.0.0/24",
) -> None:
    """Build a whole cluster on this machine (root): one network namespace per host joined
    by veth pairs to a bridge, an etcd member and a vmkitd in each. The hosts are registered
    here as h1, h2, ... ('vmkit --host h1 ...').

    [bold]Example:[/bold]  sudo vmkit cluster up --hosts 3 && vmkit --host h2 cluster hosts
    """
    from .. import hosts as peers
    from ..cluster import demo

    lay = demo.layout(name, hosts, subnet, _base())
    demo.up(lay)
    token = demo.token(lay)
    for i in lay.numbers():
        peers.add(home_paths(), peers.peer(lay.host(i), lay.api_url(i), token))
    say(f"cluster {name}: {hosts} hosts, etcd {','.join(lay.etcd_urls())}")


@command("down", group="cluster")
def cluster_down(
    name: Annotated[str, typer.Option("--name", help="The cluster's name.")] = "demo",
) -> None:
    """Remove a demo cluster: its processes (VMs included), namespaces, bridge and files,
    and its hosts from this host's list.

    [bold]Example:[/bold]  vmkit cluster down"""
    from .. import hosts as peers
    from ..cluster import demo

    lay = demo.load(_base(), name)
    demo.down(lay)
    urls = {lay.api_url(i) for i in lay.numbers()}
    for peer in peers.load(home_paths()).values():
        if peer.url in urls:
            peers.remove(home_paths(), peer.name)
    say(f"cluster {name}: removed")


@command("hosts", group="cluster")
def cluster_hosts(
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for scripts.")] = False,
) -> None:
    """List the cluster's hosts: state (ready, cordoned, draining, down), CPUs and memory
    used by running VMs out of the host's, free disk, QEMU, VMs.

    [bold]Example:[/bold]  vmkit --host h1 cluster hosts
    """
    from . import render

    found = client().cluster_hosts()
    if as_json:
        render.print_json(found)
        return

    def used(part: int | None, whole: int | None, mib: bool = False) -> str:
        if whole is None:
            return "-"
        show = (lambda n: render.size(n << 20)) if mib else str
        return f"{show(part or 0)}/{show(whole)}"

    render.table(("NAME", "STATE", "URL", "CPUS", "MEMORY", "DISK FREE", "QEMU", "VMS"), (
        (h.name, h.state, h.url, used(h.cpus_used, h.cpus),
         used(h.memory_used_mib, h.memory_mib, mib=True),
         render.size(h.disk_free_bytes) if h.disk_free_bytes is not None else "-",
         h.qemu_version or "-", str(len(h.vms))) for h in found))


# --- placement (vmkit run) and hosts (vmkit host cordon|uncordon|drain) -------------------

def placement_rules(group: str | None, spread: bool | None, host: str | None
                    ) -> dict[str, str]:
    """``vmkit run``'s --group, --spread/--pack and --host, which need --cluster."""
    from ..errors import InvalidInputError

    rules = {k: v for k, v in (("group", group), ("host", host),
                               ("policy", None if spread is None
                                else "spread" if spread else "pack")) if v}
    if rules and not state.cluster:
        raise InvalidInputError("--group, --spread, --pack and --host place a VM in a "
                                "cluster: add --cluster HOST (or set VMKIT_CLUSTER)")
    return rules


def say_why(c: object) -> None:
    """After a run in a cluster: the host chosen, and why each host was or was not."""
    placed = getattr(c, "placement", None)
    if placed is not None:
        for host, why in sorted(placed.why.items()):
            sys.stderr.write(f"{host}: {why}\n")


def _cluster_client() -> ClusterClient:
    from ..client.routing import ClusterClient
    from ..errors import InvalidInputError

    c = client()
    if not isinstance(c, ClusterClient):
        raise InvalidInputError("give the cluster: vmkit --cluster HOST host ... (HOST: any "
                                "registered member), or set VMKIT_CLUSTER")
    return c


@command("cordon", group="host")
def host_cordon(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A host of the cluster.")],
) -> None:
    """Take no new VMs on a host of the cluster (its VMs keep running).

    [bold]Example:[/bold]  vmkit --cluster h1 host cordon h2"""
    _cluster_client().mark_host(name, "cordoned")
    say(name)


@command("uncordon", group="host")
def host_uncordon(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A host of the cluster.")],
) -> None:
    """Let a cordoned or drained host of the cluster take new VMs again.

    [bold]Example:[/bold]  vmkit --cluster h1 host uncordon h2"""
    _cluster_client().mark_host(name, "ready")
    say(name)


@command("drain", group="host")
def host_drain(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A host of the cluster.")],
) -> None:
    """Empty a host of the cluster: mark it draining (no new VMs), then move each VM to a
    host the scheduler picks (keeping its group's rule), saying how each goes: running VMs
    live (migration), stopped ones cold (disk and spec; they stay stopped). A VM that cannot
    move stays as it was where it is; the drain then lists what is left and exits 1.

    [bold]Example:[/bold]  vmkit --cluster h1 host drain h2 && vmkit --cluster h1 ls"""
    left = _cluster_client().drain(name, lambda line: print(line, file=sys.stderr))
    if left:
        from .render import error

        error(f"{name}: {len(left)} VM(s) left: " + "; ".join(left))
        raise SystemExit(1)
    say(f"{name}: drained")

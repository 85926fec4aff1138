"""The ``net`` group: private networks for VMs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

from .common import client, each, say
from .registry import command, group

if TYPE_CHECKING:
    import typer


NET_HELP = """Private networks: VMs on one reach each other by IP and by name.

Under root each is a Linux bridge with its own DHCP and DNS (dnsmasq); an --isolated one has
no route out, and the host answers its VMs only DHCP and DNS. Without root each is a switch
inside vmkitd (QEMU sockets, DHCP and DNS served by vmkitd), always isolated.

[bold]Examples:[/bold]

  vmkit net create lab --isolated
  vmkit run -d -n a --network lab; vmkit run -d -n b --network lab
  vmkit exec a -- ping -c1 b
  vmkit net ls; vmkit net rm lab
"""

group("net", NET_HELP)


@command("create", group="net")
def net_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The network's name.")],
    subnet: Annotated[str | None, typer.Option(
        "--subnet", metavar="CIDR", show_default=False,
        help="e.g. 10.77.0.0/24. Default: a free /24 in 10.77.0.0/16.")] = None,
    isolated: Annotated[bool, typer.Option(
        "--isolated", help="No route out of the host; the host answers only DHCP and DNS.")
    ] = False,
) -> None:
    """Create a private network for VMs (attach them with 'vmkit run --network NAME').

    [bold]Example:[/bold]  vmkit net create lab && vmkit run -d --network lab
    """
    net = client().create_network(name, subnet, isolated)
    sys.stderr.write(f"Network {net['name']}: {net['subnet']}, gateway {net['gateway']}"
                     f"{', isolated' if net['isolated'] else ', NAT to the outside'}\n")
    say(net["name"])


@command("ls", group="net")
def net_ls(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List private networks and the VMs on them.

    [bold]Example:[/bold]  vmkit net ls
    """
    from . import render

    nets = client().list_networks()
    if as_json:
        render.print_json(nets)
        return
    render.table(["NAME", "SUBNET", "DRIVER", "ISOLATED", "VMS"],
                 [[n["name"], n["subnet"], n["driver"],
                   "yes" if n["isolated"] else "no",
                   ", ".join(n["vms"]) or "-"] for n in nets])


@command("rm", group="net")
def net_rm(
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Networks to remove.")],
) -> None:
    """Remove private networks (refused while VMs use them).

    [bold]Example:[/bold]  vmkit net rm lab
    """
    each(names, client().remove_network)

"""The ``host`` group: other vmkit hosts to drive with ``vmkit --host NAME``, and this host's
token for them. The hosts are registered in a file of the local vmkit home (``vmkit.hosts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .common import client, each, home_paths, say, state
from .registry import command, group

if TYPE_CHECKING:
    import typer


HOST_HELP = """Other vmkit hosts, to drive with 'vmkit --host NAME ...'.

A host serves its API with 'vmkitd --listen ADDR:PORT' (add --tls-cert/--tls-key for TLS)
and shows its token with 'vmkit host token'.

[bold]Examples:[/bold]

  vmkit host token                                        # on the other host
  vmkit host add lab http://10.0.0.5:8765 --token TOKEN   # here
  vmkit --host lab ls
"""

group("host", HOST_HELP)


@command("token", group="host")
def host_token() -> None:
    """Print this host's API token, for 'vmkit host add' on another host.

    The daemon makes it on its first start (VMKIT_HOME/run/token, mode 0600). It guards the
    API that 'vmkitd --listen ADDR:PORT' serves on TCP.

    [bold]Example:[/bold]  vmkit host token   # then, on another host: vmkit host add ...
    """
    from ..errors import InvalidInputError

    if state.host:
        raise InvalidInputError("a host's token can be read only on that host: run "
                                "'vmkit host token' there")
    c = client()
    c.info()  # the daemon runs, so the token exists
    say(c.paths.token.read_text().strip())


@command("add", group="host")
def host_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A name for the host.")],
    url: Annotated[str, typer.Argument(
        metavar="URL", help="Its API: http(s)://ADDR:PORT, as its 'vmkitd --listen' serves.")],
    token: Annotated[str, typer.Option("--token", help="Its token ('vmkit host token' there).",
                                       show_default=False)],
    ca: Annotated[Path | None, typer.Option(
        "--ca", metavar="PEM", show_default=False,
        help="The CA that signed its TLS certificate, if not a public one.")] = None,
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Connect once to check the URL and token.")] = True,
) -> None:
    """Register another vmkit host, checking that it answers and takes the token.

    [bold]Example:[/bold]  vmkit host add lab https://10.0.0.5:8765 --token TOKEN --ca lab-ca.pem
    """
    from .. import hosts
    from ..client import Client
    from ..errors import UnauthorizedError

    peer = hosts.peer(name, url, token, ca)
    if check:
        with Client(url=peer.url, token=peer.token, ca=peer.ca, plain=True) as remote:
            try:
                remote.info()
            except UnauthorizedError:
                raise UnauthorizedError(f"{peer.url} refused the token; copy it from "
                                        "'vmkit host token' on that host") from None
    hosts.add(home_paths(), peer)
    say(name)


@command("ls", group="host")
def host_ls(
    as_json: Annotated[bool, typer.Option("--json", help="JSON, without the tokens.")] = False,
) -> None:
    """List registered hosts (their tokens stay hidden).

    [bold]Example:[/bold]  vmkit host ls
    """
    from .. import hosts
    from . import render

    peers = hosts.load(home_paths()).values()
    if as_json:
        render.print_json([{"name": p.name, "url": p.url, "ca": p.ca} for p in peers])
        return
    render.table(("NAME", "URL", "CA"), ((p.name, p.url, p.ca or "-") for p in peers))


@command("rm", group="host")
def host_rm(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Hosts to forget.")],
) -> None:
    """Forget registered hosts (nothing changes on them).

    [bold]Example:[/bold]  vmkit host rm lab
    """
    from .. import hosts

    each(names, lambda n: hosts.remove(home_paths(), n))

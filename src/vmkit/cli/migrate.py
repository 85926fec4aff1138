"""``vmkit migrate``: move a running VM to another vmkit host (live migration)."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Annotated

from .common import client, home_paths, say
from .progress import follow
from .registry import command

if TYPE_CHECKING:
    import typer


@command()
def migrate(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The running VM.")],
    to: Annotated[str | None, typer.Option(
        "--to", metavar="HOST", show_default=False,
        help="The destination, as 'vmkit host add' registered it.")] = None,
    postcopy: Annotated[bool, typer.Option(
        "--postcopy", help="Switch to post-copy: for guests that dirty memory faster than "
                           "the link carries it. The guest runs at the destination at once and "
                           "fetches its memory on demand: if the link breaks after that, the "
                           "guest is lost.")] = False,
    cancel: Annotated[bool, typer.Option(
        "--cancel", help="Cancel the VM's migration in progress.")] = False,
    verify: Annotated[bool | None, typer.Option(
        "--verify/--no-verify", show_default=False,
        help="Compare the guest's memory on both sides before it runs at the destination "
             "(costs downtime: about 0.4 s for 256 MiB). Default: on where the QEMU is not "
             "trusted to move busy guests whole (before 10.0, under TCG).")] = None,
    watch: Annotated[float | None, typer.Option(
        "--watch", metavar="SECONDS", show_default=False,
        help="How long the guest must run well at the destination before this host lets go "
             "of its paused copy. Default 30.")] = None,
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", "-p", metavar="[ADDR:]HOST:GUEST[/udp]", show_default=False,
        help="Port forwards the VM gets at the destination instead of its own; repeatable. "
             "Needed to move it to another vmkitd on this host: the VM holds its host ports "
             "here until the switch.")] = None,
) -> None:
    """Move a running VM to another vmkit host while its guest keeps running.

    Its disk is copied first (the guest goes on writing), then its memory; the guest stops
    only for the switch. The VM keeps its name, spec and port forwards (or gets those of
    -p). If anything fails, or you press Ctrl-C, it keeps running here, unchanged. The source
    keeps the paused guest until it has run well at the destination for --watch seconds; if
    it fails there (a kernel panic, a dead agent), it resumes here where it left off, and the
    seconds it ran there are lost.

    [bold]Examples:[/bold]

      vmkit host add lab http://10.0.0.5:8765 --token TOKEN
      vmkit migrate web --to lab
      vmkit migrate web --to lab2 -p 8081:80     # lab2: another vmkitd on this host
      vmkit migrate --cancel web
    """
    from .. import hosts
    from ..errors import InvalidInputError

    c = client()
    if cancel:
        c.cancel_migration(name)
        say(name)
        return
    if not to:
        raise InvalidInputError("give the destination: --to HOST ('vmkit host ls' lists them)")
    peer = hosts.get(home_paths(), to)
    op = c.migrate(name, peer.url, peer.token, peer.ca, postcopy, verify, watch, publish)
    try:
        done = follow(c, op, f"Moving {name} to {to}")
    except KeyboardInterrupt:
        c.cancel_migration(name)
        with contextlib.suppress(Exception):
            c.wait_operation(op["id"])
        raise
    sys.stderr.write(done["message"] + "\n")
    say(name)

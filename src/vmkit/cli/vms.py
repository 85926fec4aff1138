"""Commands on VMs as a whole: list and inspect them, start, stop, kill, restart, pause,
resume, remove and resize them.

``ls`` answers from the local vmkitd over a bare socket when it can (see local.py): it is
the command people type most, and ``main._fast_ls`` runs it without Typer.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

from .common import client, each, say, time_now, state
from .registry import command

if TYPE_CHECKING:
    import typer

    from .registry import Names, StopTimeout


@command("ls")
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Names only.")] = False,
) -> None:
    """List VMs.

    [bold]Examples:[/bold]

      vmkit ls
      vmkit ls -q | xargs vmkit stop   # stop every VM
      vmkit ls --json | jq '.[] | select(.state == "running") | .name'
    """
    vms = None if state.host else _local_get("/v1/vms")
    if vms is None:
        vms = client().list_vms()
    if as_json:
        from .render import print_json

        print_json(vms)
        return
    if quiet:
        sys.stdout.write("".join(vm["name"] + "\n" for vm in vms))
        return
    from . import render

    now = time_now()
    render.table(
        ("NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "PORTS", "CREATED"),
        ((vm["name"], render.state(vm), render.image(vm), str(vm["cpus"]), vm["memory"],
          render.ports(vm), render.ago(vm["created"], now))
         for vm in vms))


def _local_get(path: str) -> Any | None:
    """A GET answered by the local daemon without importing the HTTP client (see local.py)."""
    from ..paths import HomePaths, default_home
    from .local import get_json

    return get_json(HomePaths(state.home or default_home()).socket, path)


@command()
def inspect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """Show everything about a VM.

    [bold]Examples:[/bold]

      vmkit inspect web
      vmkit inspect web --json | jq .state
    """
    vm = client().get_vm(name)
    from . import render

    if as_json:
        render.print_json(vm)
        return
    pairs = [
        ("Name", vm["name"]),
        ("State", render.state(vm)),
        ("Image", render.image(vm)),
        ("CPUs", str(vm["cpus"])),
        ("Memory", vm["memory"]),
        ("Disk", vm["disk"] or "the image's size"),
        ("Network", vm["network"]),
        ("MAC", vm["mac"]),
        ("Ports", render.ports(vm) or "-"),
        ("CD", vm.get("cdrom") or "-"),
        ("Firmware", vm.get("firmware", "bios")),
        ("QEMU PID", str(vm["pid"]) if vm.get("pid") else "-"),
        ("Auto-remove", "yes" if vm["auto_remove"] else "no"),
        ("Disposable", "yes" if vm.get("disposable") else "no"),
        ("Snapshot", vm.get("snapshot") or "-"),
        ("Forked from", vm.get("forked_from") or "-"),
        ("Created", render.when(vm["created"])),
        ("Started", render.when(vm.get("started"))),
    ]
    if vm.get("reason"):
        pairs.append(("Reason", vm["reason"]))
    render.fields(pairs)


@command()
def start(names: Names) -> None:
    """Start stopped VMs; returns when their guests are up.

    [bold]Example:[/bold]  vmkit start web db
    """
    c = client()
    each(names, c.start_vm)


@command()
def stop(
    names: Names,
    timeout: StopTimeout = 20.0,
) -> None:
    """Shut VMs down cleanly (forcing them off after --timeout).

    [bold]Examples:[/bold]

      vmkit stop web
      vmkit stop -t 5 $(vmkit ls -q)   # stop every VM, 5 s grace each
    """
    c = client()
    each(names, lambda n: c.stop_vm(n, timeout=timeout))


@command()
def kill(names: Names) -> None:
    """Force VMs off at once, like pulling the plug.

    [bold]Example:[/bold]  vmkit kill web
    """
    c = client()
    each(names, c.kill_vm)


@command()
def restart(
    names: Names,
    timeout: StopTimeout = 20.0,
) -> None:
    """Stop VMs cleanly and boot them again.

    [bold]Example:[/bold]  vmkit restart web
    """
    c = client()
    each(names, lambda n: c.restart_vm(n, timeout=timeout))


@command()
def pause(names: Names) -> None:
    """Freeze running VMs (their memory stays; CPUs stop).

    [bold]Example:[/bold]  vmkit pause web && vmkit resume web
    """
    c = client()
    each(names, c.pause_vm)


@command()
def resume(names: Names) -> None:
    """Unfreeze paused VMs.

    [bold]Example:[/bold]  vmkit resume web
    """
    c = client()
    each(names, c.resume_vm)


@command()
def rm(
    names: Names,
    force: Annotated[bool, typer.Option("--force", "-f",
                                        help="Kill running VMs instead of refusing.")] = False,
) -> None:
    """Remove VMs and their disks. Running VMs need -f (or 'vmkit stop' first).

    [bold]Examples:[/bold]

      vmkit rm web
      vmkit rm -f $(vmkit ls -q)       # remove every VM
    """
    c = client()
    each(names, lambda n: c.remove_vm(n, force=force))


@command()
def resize(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A stopped VM.")],
    cpus: Annotated[int | None, typer.Option("--cpus", help="Virtual CPUs, 1-64.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", "-m",
                                               help="Memory, e.g. 512M or 2G.")] = None,
    disk: Annotated[str | None, typer.Option(
        "--disk", help="The disk's new size, e.g. 8G; disks only grow.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The VM as JSON.")] = False,
) -> None:
    """Give a stopped VM other CPUs or memory, or a bigger disk.

    The guest sees the change at its next start; the tiny image grows its root filesystem
    to fill a bigger disk as it boots.

    [bold]Example:[/bold]  vmkit stop web && vmkit resize web --cpus 2 -m 1G --disk 8G
    """
    from . import render

    vm = client().resize_vm(name, cpus, memory, disk)
    if as_json:
        render.print_json(vm)
        return
    say(f"{name}: {vm['cpus']} CPU{'s' if vm['cpus'] > 1 else ''}, {vm['memory']} memory"
        f"{', disk ' + vm['disk'] if vm['disk'] else ''}; start it with 'vmkit start {name}'")

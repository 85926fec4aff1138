"""Commands on VMs as a whole: list and inspect them, start, stop, kill, restart, pause,
resume, remove and resize them.

``ls`` answers from the local vmkitd over a bare socket when it can (see local.py): it is
the command people type most, and ``main._fast_ls`` runs it without Typer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from .common import client, complete_vm, each, say, state, time_now
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

    IP is the guest's first address as its agent last reported it (refreshed in the
    background every few seconds: 'vmkit inspect' lists them all).

    [bold]Examples:[/bold]

      vmkit ls
      vmkit ls -q | xargs vmkit stop   # stop every VM
      vmkit ls --json | jq '.[] | select(.state == "running") | .name'
    """
    vms = None if state.host or state.cluster else _local_get("/v1/vms")
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
    host = ("HOST",) if state.cluster else ()  # --cluster: the host each VM is on
    render.table(
        ("NAME", *host, "STATE", "IP", "IMAGE", "CPUS", "MEMORY", "PORTS", "CREATED"),
        ((vm["name"], *(vm["host"] for _ in host), render.state(vm), render.address(vm),
          render.image(vm), str(vm["cpus"]), vm["memory"], render.ports(vm),
          render.ago(vm["created"], now))
         for vm in vms))


def _local_get(path: str) -> Any | None:
    """A GET answered by the local daemon without importing the HTTP client (see local.py)."""
    from ..paths import HomePaths, default_home
    from .local import get_json

    return get_json(HomePaths(state.home or default_home()).socket, path)


@command()
def inspect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.",
                                      autocompletion=complete_vm)],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="TEMPLATE", show_default=False,
        help="Print fields of the JSON as docker does: {{.state}}, {{.ports.0.host_port}}, "
             "{{json .ips}}.")] = None,
) -> None:
    r"""Show everything about a VM.

    [bold]Examples:[/bold]

      vmkit inspect web
      vmkit inspect -f '{{.state}} {{.ips.0}}' web
      vmkit inspect -f '{{json .ports}}' web
      vmkit inspect web --json | jq -r '.ports[] | "\(.host_port) -> \(.guest_port)"'
    """
    vm = client().get_vm(name)
    from . import render

    if fmt is not None:
        say(render.template(fmt, vm))
        return
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
        ("IPs", ", ".join(vm.get("ips") or ()) or "-"),
        ("Restart", vm.get("restart") or "no"),
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
    """Start stopped VMs; returns when their guests are up. A VM that runs already is left
    as it is, with a note (as docker does).

    [bold]Example:[/bold]  vmkit start web db
    """
    c = client()
    each(names, _noting_unchanged(c.start_vm))


@command()
def stop(
    names: Names,
    timeout: StopTimeout = 20.0,
) -> None:
    """Shut VMs down cleanly (forcing them off after --timeout). A VM that is not running
    is left as it is, with a note (as docker does).

    [bold]Examples:[/bold]

      vmkit stop web
      vmkit stop -t 5 $(vmkit ls -q)   # stop every VM, 5 s grace each
    """
    c = client()
    each(names, _noting_unchanged(lambda n: c.stop_vm(n, timeout=timeout)))


def _noting_unchanged(action: Callable[[str], Any]) -> Callable[[str], Any]:
    """``action``, with a note on stderr when the VM was so already (vmkitd did nothing, as
    docker's does): 'vmkit stop $(vmkit ls -q)' succeeds."""
    def run(name: str) -> Any:
        vm = action(name)
        if vm.get("unchanged"):
            sys.stderr.write(f"vmkit: {name} is {vm['state']} already\n")
        return vm
    return run


@command()
def kill(names: Names) -> None:
    """Force VMs off at once, like pulling the plug. A VM that is not running is left as
    it is, with a note.

    [bold]Example:[/bold]  vmkit kill web
    """
    c = client()
    each(names, _noting_unchanged(c.kill_vm))


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
def update(
    names: Names,
    restart: Annotated[str, typer.Option(
        "--restart", metavar="no|on-failure|always", show_default=False,
        help="The restart policy, as 'vmkit run --restart' sets it; no also calls off a "
             "restart that waits.")],
) -> None:
    """Change VMs, running or not: their restart policy (docker's 'update --restart').
    CPUs, memory and disk: 'vmkit resize'.

    [bold]Example:[/bold]  vmkit update --restart always web db
    """
    c = client()
    each(names, lambda n: c.update_vm(n, restart=restart))


@command()
def resize(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A stopped VM.",
                                      autocompletion=complete_vm)],
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

"""Snapshots and what is made of them: the ``snapshot`` group, ``fork`` and the ``template``
group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from .common import client, each, say, time_now
from .registry import command, group

if TYPE_CHECKING:
    import typer


SNAPSHOT_HELP = """Save a VM's disk and memory, list, restore and remove snapshots.

A snapshot of a running VM holds its memory too: restoring it brings the VM back to that
moment, processes and all. Snapshots form a tree: restore an older one and snapshot again
to branch.

[bold]Examples:[/bold]

  vmkit snapshot create web before-upgrade
  vmkit snapshot ls web
  vmkit snapshot restore web before-upgrade
  vmkit fork web@before-upgrade web-test     # a new VM from it, in a moment
"""

TEMPLATE_HELP = """Keep snapshots as named templates to fork VMs from.

[bold]Examples:[/bold]

  vmkit template create web --name web-base  # snapshot running web, keep it
  vmkit run --from web-base -n web2          # a ready VM in well under a second
  vmkit template ls
"""

group("snapshot", SNAPSHOT_HELP)
group("template", TEMPLATE_HELP)


@command("create", group="snapshot")
def snapshot_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    snap: Annotated[str | None, typer.Argument(
        metavar="[SNAP]", help="Snapshot name. Default: snap1, snap2, ...",
        show_default=False)] = None,
    no_memory: Annotated[bool, typer.Option(
        "--no-memory", help="The disk only, even of a running VM (the filesystems are frozen "
                            "for the moment it takes).")] = False,
) -> None:
    """Snapshot a VM: its disk and, while it runs, its memory and devices.

    A running VM pauses only for the save (about 0.1-0.3 s for 256 MiB); a stopped VM gets a
    disk snapshot. Prints the snapshot's name.

    [bold]Examples:[/bold]

      vmkit snapshot create web before-upgrade
      vmkit snapshot create web --no-memory
    """
    from . import render

    with render.busy(f"Snapshotting {name}..."):
        made = client().create_snapshot(name, snap, memory=not no_memory)
    say(made["name"])


@command("ls", group="snapshot")
def snapshot_ls(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List a VM's snapshots as a tree; * marks the one its current state descends from.

    [bold]Example:[/bold]  vmkit snapshot ls web
    """
    from . import render

    snaps = client().list_snapshots(name)
    if as_json:
        render.print_json(snaps)
        return
    now = time_now()
    render.table(
        ("NAME", "CREATED", "SIZE", "MEMORY", "PARENT", "USED BY"),
        ((("* " if s["current"] else "  ") + "  " * depth + s["name"],
          render.ago(s["created"], now), render.size(s["size"]),
          "paused" if s["paused"] and s["memory"] else "yes" if s["memory"] else "no",
          s["parent"] or "-", ", ".join(s["forks"] + s["templates"]) or "-")
         for depth, s in render.tree(snaps)))


@command("restore", group="snapshot")
def snapshot_restore(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    snap: Annotated[str, typer.Argument(metavar="SNAP", help="The snapshot.")],
) -> None:
    """Bring a VM back to a snapshot; what happened since is gone.

    With memory, the VM runs on from that moment (its processes too); a disk-only snapshot
    leaves a stopped VM stopped and reboots a running one.

    [bold]Example:[/bold]  vmkit snapshot restore web before-upgrade
    """
    from . import render

    with render.busy(f"Restoring {name} to {snap}..."):
        client().restore_snapshot(name, snap)
    say(name)


@command("rm", group="snapshot")
def snapshot_rm(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    snaps: Annotated[list[str], typer.Argument(metavar="SNAP...", help="Snapshots to remove.")],
) -> None:
    """Remove snapshots (refused for those forks or templates still use).

    [bold]Example:[/bold]  vmkit snapshot rm web snap1 snap2
    """
    c = client()
    each(snaps, lambda s: c.remove_snapshot(name, s))


@command()
def fork(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE[@SNAP]", help="VM@SNAP, a template, or a running VM (snapshotted now).")],
    name: Annotated[str, typer.Argument(metavar="NEWNAME", help="The new VM.")],
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", "-p", metavar="[ADDR:]HOST:GUEST[/udp]", show_default=False,
        help="Forward a host port to a guest port; repeatable.")] = None,
    network: Annotated[str | None, typer.Option(
        "--network", metavar="nat|restricted|none", show_default=False,
        help="nat, restricted or none. Default: the source's.")] = None,
    rm: Annotated[bool, typer.Option("--rm", help="Remove the VM when it stops.")] = False,
) -> None:
    """Create a running VM from a memory snapshot, without booting.

    The fork maps the snapshot's memory copy-on-write and loads only device state, then gets
    its own hostname, MAC, machine-id, entropy and clock before it counts as ready. Forks of
    one snapshot share the memory neither has changed. Prints the new VM's name.

    [bold]Examples:[/bold]

      vmkit fork web@snap1 web-test
      vmkit fork web web2 -p 8081:80     # snapshot running web now, fork it
      vmkit fork web-base ci-42          # from a template
    """
    from . import render

    with render.busy(f"Forking {name} from {source}..."):
        client().fork(source, name, publish or [], network, rm)
    say(name)


@command("create", group="template")
def template_create(
    source: Annotated[str, typer.Argument(
        metavar="NAME[@SNAP]", help="A running VM (snapshotted now) or VM@SNAP.")],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", show_default=False, help="The template's name. Default: NAME.")] = None,
) -> None:
    """Keep a memory snapshot as a named template, ready to fork.

    [bold]Examples:[/bold]

      vmkit template create web --name web-base
      vmkit run --from web-base -n web2
    """
    from . import render

    template = name or source.partition("@")[0]
    with render.busy(f"Making template {template}..."):
        client().create_template(template, source)
    say(template)


@command("ls", group="template")
def template_ls(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List templates.

    [bold]Example:[/bold]  vmkit template ls
    """
    from . import render

    templates = client().list_templates()
    if as_json:
        render.print_json(templates)
        return
    now = time_now()
    render.table(("NAME", "IMAGE", "CPUS", "MEMORY", "SIZE", "FROM", "FORKS", "CREATED"),
                 ((t["name"], t["image"] or "(blank)", str(t["cpus"]), f"{t['memory_mib']}M",
                   render.size(t["size"]), t["source"] or "-", str(len(t["forks"])),
                   render.ago(t["created"], now)) for t in templates))


@command("rm", group="template")
def template_rm(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Templates to remove.")],
) -> None:
    """Remove templates (refused while VMs forked from them need them).

    [bold]Example:[/bold]  vmkit template rm web-base
    """
    c = client()
    each(names, c.remove_template)

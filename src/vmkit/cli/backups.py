"""Backups into borg repositories: the ``backup`` group and its ``repo`` and ``schedule``
groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from .common import client, each, say
from .registry import command, group

if TYPE_CHECKING:
    import typer

    from ..client import Client
    from .render import Record


BACKUP_HELP = """Back VMs up into borg repositories on another disk or host, and restore them.

Backups are incremental (QEMU's dirty bitmap: only what the guest wrote since is read),
deduplicated and compressed by borg, and taken while the VM runs.

[bold]Examples:[/bold]

  vmkit backup repo add usb /mnt/usb/vmkit
  vmkit backup create web                   # full first, incremental after
  vmkit backup ls web
  vmkit backup restore web.20261205T101500 --name web-copy
  vmkit backup schedule web --every 1h --keep-hourly 24 --keep-daily 7
"""

group("backup", BACKUP_HELP)
group("backup repo", """Add, list and forget borg repositories.

[bold]Examples:[/bold]

  vmkit backup repo add usb /mnt/usb/vmkit
  vmkit backup repo add offsite ssh://backup@nas/srv/vmkit --encryption repokey
""")
group("backup schedule", """Back VMs up on a schedule, pruned by borg's retention rules.

[bold]Examples:[/bold]

  vmkit backup schedule set web --every 1h --keep-hourly 24 --keep-daily 7 --keep-weekly 4
  vmkit backup schedule ls
  vmkit backup schedule rm web
""")

@command("add", group="backup repo")
def repo_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The repository's name here.")],
    location: Annotated[str, typer.Argument(
        metavar="PATH|ssh://USER@HOST/PATH", help="Where: an absolute path on vmkitd's host "
                                                 "(another disk) or another host over ssh.")],
    encryption: Annotated[str, typer.Option(
        "--encryption", metavar="none|repokey|repokey-blake2",
        help="borg's encryption; vmkitd keeps the passphrase.")] = "none",
) -> None:
    """Make a borg repository at PATH (or take the one there) to keep backups in.

    [bold]Example:[/bold]  vmkit backup repo add usb /mnt/usb/vmkit
    """
    say(client().add_backup_repo(name, location, encryption)["name"])


@command("ls", group="backup repo")
def repo_ls() -> None:
    """List the repositories.

    [bold]Example:[/bold]  vmkit backup repo ls
    """
    from . import render

    render.table(("NAME", "LOCATION", "ENCRYPTION"),
                 ((r["name"], r["location"], r["encryption"]) for r in client().list_backup_repos()))


@command("rm", group="backup repo")
def repo_rm(names: Annotated[list[str], typer.Argument(metavar="NAME...")]) -> None:
    """Forget repositories; the backups in them stay where they are.

    [bold]Example:[/bold]  vmkit backup repo rm usb
    """
    c = client()
    each(names, c.remove_backup_repo)


@command("create", group="backup")
def backup_create(
    name: Annotated[str, typer.Argument(metavar="VM", help="The VM.")],
    repo: Annotated[str | None, typer.Option(
        "--repo", "-r", metavar="REPO", show_default=False,
        help="The repository. Default: the only one there is.")] = None,
    memory: Annotated[bool, typer.Option(
        "--memory", help="Add memory and devices: restored, the VM runs on from this moment.")
                      ] = False,
) -> None:
    """Back a VM up while it runs (a stopped one from its disk). Prints the backup's id.

    The first backup into a repository is full; the next ones read only what the guest
    wrote since. Ctrl-C cancels: the VM and the repository stay as they were.

    [bold]Examples:[/bold]

      vmkit backup create web
      vmkit backup create web --memory --repo offsite
    """
    c = client()
    op = _follow(c, c.create_backup(name, repo, memory), f"Backing up {name}")
    say(op["message"].removeprefix("backup ").removesuffix(" stored"))


def _follow(c: Client, op: Record, title: str) -> Record:
    """The operation followed to its end with a progress bar; Ctrl-C cancels it."""
    from rich.markup import escape

    from .progress import follow

    return follow(c, op, f"[bold]{escape(title)}[/bold]", transient=True)


@command("ls", group="backup")
def backup_ls(
    name: Annotated[str | None, typer.Argument(metavar="[VM]", help="Only this VM's.",
                                               show_default=False)] = None,
    repo: Annotated[str | None, typer.Option(
        "--repo", "-r", metavar="REPO", show_default=False,
        help="The repository. Default: the only one there is.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")] = False,
) -> None:
    """List backups, oldest first: size, what it added to the repository (DEDUP), kind.

    [bold]Example:[/bold]  vmkit backup ls web
    """
    from . import render

    backups = client().list_backups(name, repo)
    if as_json:
        render.print_json(backups)
        return
    render.table(("ID", "VM", "TIME", "SIZE", "DEDUP", "KIND", "MEMORY", "REPO"), (
        (b["id"], b["vm"] or "-", b["time"][:19], render.size(b["size"]),
         render.size(b["deduplicated_size"]) if b["deduplicated_size"] is not None else "-",
         b["kind"] or "-", "yes" if b["memory"] else "no", b["repo"]) for b in backups))


@command("restore", group="backup")
def backup_restore(
    backup_id: Annotated[str, typer.Argument(
        metavar="ID", help="The backup (VM.YYYYMMDDTHHMMSS).")],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", metavar="NEW", show_default=False,
        help="Restore as a new VM. Default: roll its own VM back (it must be stopped).")] = None,
    repo: Annotated[str | None, typer.Option(
        "--repo", "-r", metavar="REPO", show_default=False,
        help="The repository. Default: the only one there is.")] = None,
) -> None:
    """Restore a backup as a new VM, or roll its (stopped) VM back to it.

    With memory, the VM runs on from where the backup was taken. A new VM gets no port
    forwards (the original may hold them): add them with 'vmkit port'. Ctrl-C cancels
    until the VM is being made or its disk swapped: nothing changes.

    [bold]Examples:[/bold]

      vmkit backup restore web.20261205T101500 --name web-copy
      vmkit stop web && vmkit backup restore web.20261205T101500
    """
    c = client()
    op = _follow(c, c.restore_backup(backup_id, name, repo), f"Restoring {backup_id}")
    say(op["target"])


@command("verify", group="backup")
def backup_verify(backup_id: Annotated[str, typer.Argument(
        metavar="ID", help="The backup (VM.YYYYMMDDTHHMMSS).")], repo: Annotated[str | None, typer.Option(
        "--repo", "-r", metavar="REPO", show_default=False,
        help="The repository. Default: the only one there is.")] = None) -> None:
    """Read a backup back entirely and check every chunk; fails, naming it, if damaged.

    Ctrl-C stops the check; the backup stays as it is.

    [bold]Example:[/bold]  vmkit backup verify web.20261205T101500
    """
    c = client()
    _follow(c, c.verify_backup(backup_id, repo), f"Verifying {backup_id}")
    say(f"{backup_id}: ok")


@command("rm", group="backup")
def backup_rm(ids: Annotated[list[str], typer.Argument(metavar="ID...")], repo: Annotated[str | None, typer.Option(
        "--repo", "-r", metavar="REPO", show_default=False,
        help="The repository. Default: the only one there is.")] = None
              ) -> None:
    """Remove backups from their repository (and free their space).

    [bold]Example:[/bold]  vmkit backup rm web.20261205T101500
    """
    c = client()
    each(ids, lambda i: c.remove_backup(i, repo))


@command("set", group="backup schedule")
def schedule_set(
    name: Annotated[str, typer.Argument(metavar="VM", help="The VM.")],
    every: Annotated[str, typer.Option("--every", metavar="DURATION",
                                       help="30m, 1h, 1d...")],
    repo: Annotated[str | None, typer.Option(
        "--repo", "-r", metavar="REPO", show_default=False,
        help="The repository. Default: the only one there is.")] = None,
    keep_last: Annotated[int, typer.Option("--keep-last", help="Keep the last N.")] = 0,
    keep_hourly: Annotated[int, typer.Option("--keep-hourly", help="Keep N hourly.")] = 0,
    keep_daily: Annotated[int, typer.Option("--keep-daily", help="Keep N daily.")] = 0,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly", help="Keep N weekly.")] = 0,
    keep_monthly: Annotated[int, typer.Option("--keep-monthly", help="Keep N monthly.")] = 0,
) -> None:
    """Back a VM up every DURATION, then prune its backups with borg's retention rules.

    vmkitd runs the schedule, also after a restart; runs missed while it was down are
    counted ('schedule ls', /metrics), not made up for.

    [bold]Example:[/bold]  vmkit backup schedule set web --every 1h --keep-hourly 24 --keep-daily 7
    """
    client().set_backup_schedule(name, every, repo, keep_last=keep_last,
                                 keep_hourly=keep_hourly, keep_daily=keep_daily,
                                 keep_weekly=keep_weekly, keep_monthly=keep_monthly)
    say(name)


@command("ls", group="backup schedule")
def schedule_ls() -> None:
    """List schedules: when the next backup is due and how the last went.

    [bold]Example:[/bold]  vmkit backup schedule ls
    """
    from . import render

    render.table(("VM", "EVERY", "REPO", "KEEP", "NEXT", "LAST", "RUNS", "FAILED", "MISSED"), (
        (s["vm"], f"{s['every']}s", s["repo"],
         " ".join(f"{k}={n}" for k, n in s["keep"].items()) or "all", render.when(s["next_run"]),
         "-" if s["last_ok"] is None else "ok" if s["last_ok"] else f"failed: {s['last_error']}",
         str(s["runs"]), str(s["failures"]), str(s["missed"]))
        for s in client().list_backup_schedules()))


@command("rm", group="backup schedule")
def schedule_rm(names: Annotated[list[str], typer.Argument(metavar="VM...")]) -> None:
    """Stop backing VMs up on schedule (their backups stay).

    [bold]Example:[/bold]  vmkit backup schedule rm web
    """
    c = client()
    each(names, c.remove_backup_schedule)

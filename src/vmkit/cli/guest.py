"""Reaching into a VM: its serial console and log, ssh, exec, a shell, and copying files in and
out."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from .common import client, state
from .registry import command

if TYPE_CHECKING:
    import typer


@command()
def console(name: Annotated[str, typer.Argument(metavar="NAME", help="A running VM.")]) -> None:
    """Attach to a VM's serial console.

    Press Enter for a prompt; Ctrl-] detaches and leaves the VM running. Everything else,
    Ctrl-C included, goes to the guest. Returns by itself when the VM stops.

    [bold]Example:[/bold]  vmkit console web
    """
    c = client()
    c.get_vm(name)  # starts vmkitd if needed and says clearly when there is no such VM
    from .console import attach_and_report

    attach_and_report(c, name)


@command()
def logs(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing new output until the VM stops "
                                              "(or Ctrl-C).")] = False,
    tail: Annotated[int | None, typer.Option(
        "--tail", "-n", metavar="N", min=0, show_default=False,
        help="Only the last N lines (then, with -f, what comes next).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="T", show_default=False,
        help="Only what arrived since T: 10m, 2h, 1h30m ago, or an ISO time such as "
             "2026-12-05T10:00 (local) or ...Z (to the second: up to a second more).")
                     ] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Keep the terminal's escape sequences and carriage returns.")] = False,
) -> None:
    """Print a VM's serial console output (kept across restarts), as text: without the
    terminal's escape sequences unless --raw.

    [bold]Examples:[/bold]

      vmkit logs web
      vmkit logs -n 20 web             # the last 20 lines
      vmkit logs -f -n 0 web           # only what comes next, until the VM stops
      vmkit logs --since 10m web       # what it printed in the last ten minutes
    """
    from .logtext import clean

    chunks = client().logs(name, follow=follow, tail=tail, since=since)
    out = sys.stdout.buffer
    for chunk in chunks if raw else clean(chunks):
        out.write(chunk)
        out.flush()
    if follow:
        sys.stderr.write(f"vmkit: {name} is not running; its log ends here\n")


@command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A running VM.")],
    command: Annotated[list[str] | None, typer.Argument(
        metavar="[-- COMMAND]", show_default=False,
        help="A command to run instead of a login shell; put it after --.")] = None,
    identity: Annotated[Path | None, typer.Option(
        "--identity", "-i", metavar="KEY", show_default=False,
        help="The private key. Default: the one here that matches the VM's --ssh-key.")
                        ] = None,
    user: Annotated[str, typer.Option("--user", "-l", help="Who to log in as.")] = "debian",
) -> None:
    """Log in to a VM with ssh, through its forwarded port and with the key it was given.

    Images with cloud-init (debian) get a loopback port forwarded to their port 22 and the
    user 'debian' with your key; other VMs need -p PORT:22 and an sshd of their own.

    [bold]Examples:[/bold]

      vmkit ssh dev
      vmkit ssh dev -- sudo systemctl status
      vmkit ssh dev -- cat /etc/os-release > os-release.txt
    """
    from .provision import ssh_argv

    command = (command or [])[1:] if (command or [])[:1] == ["--"] else (command or [])
    argv = ssh_argv(client().get_vm(name), identity, user, command)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                   "allow_interspersed_args": False})
def exec_(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A running VM.")],
    command: Annotated[list[str], typer.Argument(
        metavar="COMMAND", show_default=False,
        help="The command and its arguments; put them after -- so that their options are "
             "not taken as vmkit's.")],
    interactive: Annotated[bool, typer.Option(
        "--interactive", "-i", help="Pass standard input even from a terminal (read to its "
                                    "end, Ctrl-D, before the command starts).")] = False,
    tty: Annotated[bool, typer.Option(
        "--tty", "-t", help="Run the command on a terminal in the guest, connected to this "
                            "one: for interactive programs (sh, top, vi).")] = False,
) -> None:
    """Run a command in a VM; its output streams back and its exit status becomes vmkit's.

    Standard input is passed to the command when it is not a terminal (or with -i). With -t
    (usually -it) the command gets a terminal of the window's size that follows its resizes,
    as 'docker exec -it' gives. Errors of vmkit itself exit with 125, so they are not
    mistaken for the command's.

    [bold]Examples:[/bold]

      vmkit exec web -- ls -la /
      vmkit exec web -- sh -c 'echo $HOSTNAME; uptime'
      echo hello | vmkit exec web -- tr a-z A-Z
      vmkit exec -it web top
    """
    state.error_exit = 125
    command = command[1:] if command[:1] == ["--"] else command  # Click keeps "--" here
    if tty:
        raise SystemExit(_on_terminal(name, command))
    stdin = None
    if sys.stdin is not None and (interactive or not sys.stdin.isatty()):
        try:
            stdin = sys.stdin.buffer.read() or None
        except OSError:
            stdin = None
    c = client()
    c.get_vm(name)  # starts vmkitd if needed and says clearly when there is no such VM
    out, err = sys.stdout.buffer, sys.stderr.buffer
    code = 125
    for stream, data in c.exec_stream(name, command, stdin):
        if stream == "exit":
            code = int(data)
        else:
            f = out if stream == "stdout" else err
            f.write(data)  # type: ignore[arg-type]
            f.flush()
    raise SystemExit(code)


@command()
def shell(name: Annotated[str, typer.Argument(metavar="NAME", help="A running VM.")]) -> None:
    """Open a login shell in a VM, as root, on a terminal that follows the window's size.

    It works in every VM with the guest agent (the tiny image included; no ssh needed) and
    exits with the shell's status. With standard input from a pipe or file there is no
    terminal: the shell runs what is piped in, as 'ssh host < script' does.

    [bold]Examples:[/bold]

      vmkit shell web
      vmkit shell web < setup.sh
      echo 'uname -a' | vmkit shell web
    """
    state.error_exit = 125
    if sys.stdin is not None and sys.stdin.isatty():
        raise SystemExit(_on_terminal(name, None))
    from ..client.terminal import LOGIN_SHELL

    exec_(name, LOGIN_SHELL, interactive=True, tty=False)


def _on_terminal(name: str, command: list[str] | None) -> int:
    """Run ``command`` (a login shell without it) on a terminal connected to this one."""
    from ..errors import InvalidInputError

    if sys.stdin is None or not sys.stdin.isatty():
        raise InvalidInputError("-t needs a terminal on standard input; drop -t to pass "
                                "piped input to the command, e.g. echo hi | vmkit exec "
                                f"{name} -- cat")
    c = client()
    c.get_vm(name)  # starts vmkitd if needed and says clearly when there is no such VM
    from .console import run_terminal

    return run_terminal(c, name, command)


@command()
def cp(
    src: Annotated[str, typer.Argument(
        metavar="SRC", help="NAME:/path in a VM, a local path, or - for stdin.")],
    dst: Annotated[str, typer.Argument(
        metavar="DST", help="NAME:/path in a VM, a local path, or - for stdout.")],
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Copy directories, with all they hold.")] = False,
) -> None:
    """Copy files and directories between this host and a VM, keeping modes and times.

    Exactly one of SRC and DST is in the VM, written NAME:/absolute/path. A destination that
    is a directory receives SRC under its own name; otherwise SRC is copied to that name.
    Directories need -r. Files copied in belong to root. A local '-' means standard input or
    output (one file's bytes). A failed copy of a file leaves no partial local file behind.

    [bold]Examples:[/bold]

      vmkit cp ./app.conf web:/etc/app.conf
      vmkit cp -r ./site web:/srv/            # -> /srv/site
      vmkit cp -r web:/var/log ./web-logs     # -> ./web-logs, a copy of /var/log
      vmkit cp web:/etc/os-release - | head -3
    """
    from ..errors import InvalidInputError

    into, out_of = _guest_path(dst), _guest_path(src)
    if bool(into) == bool(out_of):
        raise InvalidInputError(
            "give exactly one guest path, written NAME:/absolute/path, e.g. "
            "'vmkit cp ./file web:/root/file' or 'vmkit cp web:/root/file .'")
    c = client()
    if into:
        c.get_vm(into[0])  # starts vmkitd if needed and says clearly when there is no such VM
        if src == "-":
            _stdin_in(*into)
        else:
            from .copying import copy_in

            copy_in(c, src, *into, recursive)
    elif out_of:
        c.get_vm(out_of[0])
        _copy_out_any(c, *out_of, dst, recursive)


def _copy_out_any(c: Any, name: str, path: str, dst: str, recursive: bool) -> None:
    from ..errors import InvalidInputError
    from .copying import copy_out_dir, probe, set_mode_and_time

    if dst == "-":
        _copy_out(name, path, dst)
        return
    facts = probe(c, name, path)
    if facts[0] == "-":
        raise InvalidInputError(f"{name}:{path} does not exist")
    if facts[0] == "d" and not recursive:
        raise InvalidInputError(f"{name}:{path} is a directory: copy it with -r, e.g. "
                                f"vmkit cp -r {name}:{path} {dst}")
    if facts[0] == "d":
        copy_out_dir(c, name, path, dst)
    elif (target := _copy_out(name, path, dst)) is not None:
        set_mode_and_time(target, facts)


def _guest_path(arg: str) -> tuple[str, str] | None:
    """'web:/etc/hosts' -> ('web', '/etc/hosts'); None for a local path."""
    name, sep, path = arg.partition(":")
    if not sep or not path.startswith("/") or not name:
        return None
    from ..spec import NAME_RE

    return (name, path) if NAME_RE.match(name) else None


CHUNK = 1 << 20


def _stdin_in(name: str, path: str) -> None:
    """Write standard input to the guest file ``path``."""
    from ..errors import InvalidInputError

    if path.endswith("/"):
        raise InvalidInputError(f"give the file name to write standard input to, e.g. "
                                f"{name}:{path}file")

    def chunks() -> Iterator[bytes]:
        while data := sys.stdin.buffer.read(CHUNK):
            yield data

    client().write_file(name, path, chunks())


def _copy_out(name: str, path: str, dst: str) -> Path | None:
    """Copy one guest file to ``dst`` (stdout for '-'); returns the file written."""
    import tempfile

    from ..errors import InvalidInputError

    chunks = iter(client().read_file(name, path))
    if dst == "-":
        out = sys.stdout.buffer
        for data in chunks:
            out.write(data)
        out.flush()
        return None
    base = path.rstrip("/").rsplit("/", 1)[-1]
    target = Path(dst)
    if target.is_dir():
        if not base:
            raise InvalidInputError(f"{name}:{path} is not a file")
        target = target / base
    elif dst.endswith("/"):
        raise InvalidInputError(f"{dst} is not a directory")
    first = next(chunks, b"")  # a missing guest file fails here, before we write anything
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                   dir=target.parent)
    except OSError as e:
        raise InvalidInputError(f"cannot write {dst}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(first)
            for data in chunks:
                f.write(data)
            os.fchmod(f.fileno(), _new_file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _new_file_mode(target: Path) -> int:
    """Keep an existing file's mode; a new file gets 0666 less the umask, as cp does."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask

"""Reaching into a VM: its serial console and log, ssh, exec, and copying files in and out."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
) -> None:
    """Print a VM's serial console output (kept across restarts).

    [bold]Examples:[/bold]

      vmkit logs web
      vmkit logs -f web                # follow, like tail -f, until the VM stops
    """
    out = sys.stdout.buffer
    for chunk in client().logs(name, follow=follow):
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
) -> None:
    """Run a command in a VM; its output streams back and its exit status becomes vmkit's.

    Standard input is passed to the command when it is not a terminal. Errors of vmkit itself
    exit with 125, so they are not mistaken for the command's.

    [bold]Examples:[/bold]

      vmkit exec web -- ls -la /
      vmkit exec web -- sh -c 'echo $HOSTNAME; uptime'
      echo hello | vmkit exec web -- tr a-z A-Z
    """
    state.error_exit = 125
    stdin = None
    if sys.stdin is not None and not sys.stdin.isatty():
        try:
            stdin = sys.stdin.buffer.read() or None
        except OSError:
            stdin = None
    c = client()
    c.get_vm(name)  # starts vmkitd if needed and says clearly when there is no such VM
    command = command[1:] if command[:1] == ["--"] else command  # Click keeps "--" here
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
def cp(
    src: Annotated[str, typer.Argument(
        metavar="SRC", help="NAME:/path in a VM, a local path, or - for stdin.")],
    dst: Annotated[str, typer.Argument(
        metavar="DST", help="NAME:/path in a VM, a local path, or - for stdout.")],
) -> None:
    """Copy a file between this host and a VM.

    Exactly one of SRC and DST is in the VM, written NAME:/absolute/path. A local '-' means
    standard input or output. A guest path ending in '/', or a local directory, receives the
    file under its own name. A failed copy leaves no partial local file behind.

    [bold]Examples:[/bold]

      vmkit cp ./app.conf web:/etc/app.conf
      vmkit cp web:/var/log/messages .
      tar cz src | vmkit cp - web:/root/src.tgz
      vmkit cp web:/etc/os-release - | head -3
    """
    from ..errors import InvalidInputError

    into, out_of = _guest_path(dst), _guest_path(src)
    if bool(into) == bool(out_of):
        raise InvalidInputError(
            "give exactly one guest path, written NAME:/absolute/path, e.g. "
            "'vmkit cp ./file web:/root/file' or 'vmkit cp web:/root/file .'")
    if into:
        _copy_in(src, *into)
    elif out_of:
        _copy_out(*out_of, dst)


def _guest_path(arg: str) -> tuple[str, str] | None:
    """'web:/etc/hosts' -> ('web', '/etc/hosts'); None for a local path."""
    name, sep, path = arg.partition(":")
    if not sep or not path.startswith("/") or not name:
        return None
    from ..spec import NAME_RE

    return (name, path) if NAME_RE.match(name) else None


CHUNK = 1 << 20


def _copy_in(src: str, name: str, path: str) -> None:
    from ..errors import InvalidInputError

    if path.endswith("/"):
        if src == "-":
            raise InvalidInputError(f"give the file name to write standard input to, e.g. "
                                    f"{name}:{path}file")
        path += os.path.basename(src.rstrip("/"))
    if src == "-":
        f = sys.stdin.buffer
    else:
        if os.path.isdir(src):
            raise InvalidInputError(f"{src} is a directory: vmkit cp copies one file; "
                                    "archive directories with tar, e.g. "
                                    f"tar cz {src} | vmkit cp - {name}:/root/dir.tgz")
        try:
            f = open(src, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise InvalidInputError(f"cannot read {src}: {e.strerror}") from None

    def chunks() -> Iterator[bytes]:
        while data := f.read(CHUNK):
            yield data

    try:
        client().write_file(name, path, chunks())
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def _copy_out(name: str, path: str, dst: str) -> None:
    import tempfile

    from ..errors import InvalidInputError

    chunks = iter(client().read_file(name, path))
    if dst == "-":
        out = sys.stdout.buffer
        for data in chunks:
            out.write(data)
        out.flush()
        return
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


def _new_file_mode(target: Path) -> int:
    """Keep an existing file's mode; a new file gets 0666 less the umask, as cp does."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask

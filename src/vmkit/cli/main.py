"""The ``vmkit`` command: docker-like verbs over the SDK (``vmkit.Client``). It parses input and
renders output; vmkitd (started on demand) does the work.

This module assembles the command line: the top-level help, the app (``build_app``) and the
entry point (``main``). The commands live one group to a module (``run``, ``vms``, ``guest``,
``snapshots``, ``migrate``, ``portable``, ``net``, ``forensics``, ``hosts``, ``images``,
``info``); what they share is in ``registry`` (how a command is declared), ``common`` (the
invocation's state and client) and ``progress`` (progress bars).

Startup time matters (``vmkit ls`` should feel instant), so importing this module imports
nothing heavy: commands register with ``@command`` into a plain list, and the Typer app is
built from it only when a command line needs parsing (``build_app``, which also imports the
command modules). The SDK and Rich are imported inside the commands that use them (tables
are plain text, see ``render``), and plain ``vmkit ls`` skips Typer altogether (``_fast_ls``).

Errors are caught in one place, ``main``: one red line on stderr, exit status 1 (125 for
``exec``, whose other statuses are the guest command's), never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from . import vms
from .common import state
from .registry import COMMANDS, GROUPS, annotation_names, help_text, prose, resolve_annotations

if TYPE_CHECKING:
    import typer

HELP = """Run and manage QEMU virtual machines.

vmkit starts its daemon, vmkitd, on first use; every command talks to it.

[bold]Examples:[/bold]

  vmkit run -d -n web -p 8080:80     # boot a VM in the background
  vmkit ls                           # list VMs
  vmkit exec web -- uname -a         # run a command in it
  vmkit console web                  # its serial console; Ctrl-] detaches
  vmkit rm -f web                    # stop and remove it
"""
# The order of 'vmkit --help': the commands, then the groups. A command or group missing
# here is listed after the others.
LISTING = ("run", "ls", "inspect", "start", "stop", "kill", "restart", "pause", "resume", "rm",
           "console", "resize", "update", "vnc", "ui", "logs", "ssh", "shell", "exec", "cp",
           "fork", "migrate", "export", "import", "dump", "stats", "diff", "capture", "info", "version",
           "completion", "daemon", "image", "snapshot", "template", "host", "cluster", "net")


def build_app() -> typer.Typer:
    """The Typer app with every registered command."""
    import typer

    # Importing the command modules registers their commands (vms, for _fast_ls, is in).
    from . import (backups, cluster, daemon, forensics, guest, hosts, images, info,  # noqa: F401
                   migrate, net, portable, run, snapshots)

    if os.environ.get("_VMKIT_COMPLETE"):  # the shell asks for completions ('vmkit completion')
        from typer._completion_classes import completion_init

        completion_init()

    names = annotation_names()
    settings = {"help_option_names": ["-h", "--help"]}
    app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, rich_markup_mode="rich",
                      context_settings=settings)
    groups = {name: typer.Typer(help=prose(text), no_args_is_help=True,
                                context_settings=settings)
              for name, text in sorted(GROUPS.items(), key=lambda g: _rank(g[0]))}
    groups[""] = app
    app.callback()(resolve_annotations(_root, names))
    # A stable sort: only top-level commands move; a group's keep the order they were made in.
    for cmd in sorted(COMMANDS, key=lambda cmd: 0 if cmd.group else _rank(cmd.name)):
        groups[cmd.group].command(cmd.name, help=help_text(cmd.function), **cmd.options)(
            resolve_annotations(cmd.function, names))
    for group_name, typer_group in groups.items():
        if group_name:  # "backup repo": the group repo in the group backup
            parent, _, leaf = group_name.rpartition(" ")
            groups[parent].add_typer(typer_group, name=leaf)
    return app


def _rank(name: str) -> int:
    return LISTING.index(name) if name in LISTING else len(LISTING)


def __getattr__(name: str) -> Any:
    if name == "app":  # for tests: typer.testing.CliRunner().invoke(main.app, [...])
        return build_app()
    raise AttributeError(name)


def _root(
    home: Annotated[Path | None, typer.Option(
        "--home", envvar="VMKIT_HOME", show_default=False, metavar="PATH",
        help="vmkit's state directory: VMs, images and the daemon's socket. "
             "Default: ~/.local/share/vmkit (/var/lib/vmkit for root).")] = None,
    host: Annotated[str | None, typer.Option(
        "--host", "-H", envvar="VMKIT_HOST", show_default=False, metavar="NAME",
        help="Run the command on another vmkit host ('vmkit host add' registers it).")
                    ] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", "-C", envvar="VMKIT_CLUSTER", show_default=False, metavar="HOST",
        help="Drive the whole cluster through HOST, any registered member: 'ls' lists every "
             "VM with its host, VM commands reach the VM's host, 'run' places the VM.")
                       ] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, expose_value=False, callback=_print_version,
        help="Print vmkit's version and exit.")] = False,
) -> None:
    state.home = home
    state.host = host
    state.cluster = cluster


def _print_version(value: bool) -> None:
    if value:
        from .info import version

        version()
        raise SystemExit(0)


# --- entry point -----------------------------------------------------------------------

def main() -> None:
    """The console script. The one place errors become a message and an exit status."""
    _trim_imports()
    from ..errors import VmkitError

    # SIGTERM and SIGHUP unwind like Ctrl-C, so every command cleans up the same way (cp
    # removes its partial file); the exit status is 128 + the signal's number.
    signalled = 0

    def interrupt(signum: int, frame: object) -> None:
        nonlocal signalled
        signalled = signum
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    code = 0
    try:
        if not _fast_ls(sys.argv[1:]):
            build_app()(prog_name="vmkit")
    except VmkitError as e:
        _fail(e.message)
        code = state.error_exit
    except KeyboardInterrupt:
        code = 130
    except SystemExit:
        if not signalled:  # typer exits 130 on any KeyboardInterrupt, ours included
            raise
    except BrokenPipeError:
        _silence_stdout()
        code = 141
    except Exception as e:  # noqa: BLE001 - the promise is: no traceback, ever
        if os.environ.get("VMKIT_DEBUG"):
            raise
        _fail(_describe(e))
        code = state.error_exit
    finally:
        if state.client is not None:
            state.client.close()
    sys.exit(128 + signalled if signalled else code)


def _trim_imports() -> None:
    """Keep two optional imports of our dependencies out of the CLI, which uses neither:
    httpcore imports trio whenever it is installed (~100 ms), and ``import httpx`` loads its
    own command line, ``httpx._main`` (click, pygments, rich.progress: ~50 ms). The second
    takes effect only if nothing imported httpx before ``main`` runs."""
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    if "httpx" not in sys.modules:
        import types

        stub = types.ModuleType("httpx._main")
        stub.main = _httpx_main  # type: ignore[attr-defined]
        sys.modules.setdefault("httpx._main", stub)


def _httpx_main() -> None:  # stands in for httpx.main, the httpx command line
    raise SystemExit("vmkit does not include the httpx command line")


def _fast_ls(args: list[str]) -> bool:
    """Run ``vmkit [--home PATH] ls [-q] [--json]`` without building the Typer app, which costs
    more than listing itself. Anything else (``--help`` included) goes through Typer."""
    home = os.environ.get("VMKIT_HOME") or None
    if args[:1] == ["--home"] and len(args) > 1:
        home, args = args[1], args[2:]
    elif args[:1] and args[0].startswith("--home="):
        home, args = args[0].partition("=")[2], args[1:]
    flags = set(args[1:])
    if args[:1] != ["ls"] or not flags <= {"-q", "--quiet", "--json"} \
            or os.environ.get("VMKIT_HOST"):
        return False
    state.home = Path(home) if home else None
    vms.ls(as_json="--json" in flags, quiet=bool(flags & {"-q", "--quiet"}))
    return True


def _fail(message: str) -> None:
    try:
        from .render import error

        error(message)
    except Exception:  # noqa: BLE001 - Rich failing must not hide the message
        sys.stderr.write(f"vmkit: {message}\n")


def _describe(e: Exception) -> str:
    """A sentence for an exception that is not a VmkitError (a bug, or a broken transport)."""
    import httpx

    log = state.client.paths.daemon_log if state.client else "vmkitd.log"
    if isinstance(e, httpx.TimeoutException):
        return f"vmkitd did not answer in time; its log may say why: {log}"
    if isinstance(e, httpx.ConnectError):
        return f"cannot reach vmkitd ({e}); is it running? Its log: {log}"
    if isinstance(e, httpx.TransportError):
        return f"vmkitd broke off its answer ({e}); its log may say why: {log}"
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return (f"unexpected error: {type(e).__name__}: {e} "
            "(run with VMKIT_DEBUG=1 for a traceback, and please report it)")


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so Python's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()

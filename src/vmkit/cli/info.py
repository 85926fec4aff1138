"""About the daemon, the host and the displays: ``info``, ``version``, the web dashboard
(``ui``) and a VM's VNC server (``vnc``).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

from .common import client, home_paths, say, state
from .registry import command

if TYPE_CHECKING:
    import typer


@command()
def info(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """Show the daemon and host: state directory, accelerator, counts.

    [bold]Example:[/bold]  vmkit info
    """
    c = client()
    data = c.info()
    from . import render

    if as_json:
        render.print_json(data)
        return
    accel = data.get("accel") or "not probed yet (the first VM start probes it)"
    if data.get("accel_reason"):
        lines = (line.strip() for line in data["accel_reason"].splitlines())
        accel += f" ({'; '.join(line for line in lines if line)})"
    render.fields([
        ("Home", data["home"]),
        ("Socket", str(c.paths.socket)),
        ("Daemon PID", str(data["pid"])),
        ("QEMU", f"{data.get('qemu_version')} ({data.get('qemu')})" if data.get("qemu")
         else "not found"),
        ("QEMU features", ", ".join(data.get("qemu_features") or []) or "-"),
        ("Accelerator", accel),
        ("CPU/memory limits", data.get("limits", "")),
        ("VMs", str(data["vms"])),
        ("Images", str(data["images"])),
    ])


@command()
def version() -> None:
    """Print vmkit's version (also 'vmkit --version').

    [bold]Example:[/bold]  vmkit version
    """
    from .. import __version__

    say(f"vmkit {__version__}")


SHELLS = ("bash", "zsh", "fish")


@command()
def completion(
    shell: Annotated[str, typer.Argument(metavar="bash|zsh|fish",
                                         help="The shell to complete vmkit's commands in.")],
) -> None:
    """Print the script that makes a shell complete vmkit's commands, options and VM names.

    Load it in the shell's start-up file; the shell then asks vmkit for completions as you
    press Tab (ordinary commands do not pay for it).

    [bold]Examples:[/bold]

      echo 'source <(vmkit completion bash)' >> ~/.bashrc
      vmkit completion zsh > "${fpath[1]}/_vmkit"     # then start a new shell
      vmkit completion fish > ~/.config/fish/completions/vmkit.fish
    """
    from ..errors import InvalidInputError

    if shell not in SHELLS:
        raise InvalidInputError(f"vmkit completes in bash, zsh and fish, not {shell!r}")
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name="vmkit", complete_var="_VMKIT_COMPLETE",
                                   shell=shell)
    say(script.rstrip("\n"))


@command()
def ui(
    no_open: Annotated[bool, typer.Option(
        "--no-open", help="Print the URL only; do not open a browser.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The URL as JSON.")] = False,
) -> None:
    """Print the web dashboard's URL, and open it in a browser when there is one.

    vmkitd serves the dashboard on its TCP listener at /ui/: start it with 'vmkitd --listen
    127.0.0.1:8765'. Log in with the token 'vmkit host token' prints; the browser opened here
    is logged in already.

    [bold]Example:[/bold]  vmkit ui --no-open
    """
    from ..errors import InvalidStateError
    from . import render

    if state.host:
        from .. import hosts

        peer = hosts.get(home_paths(), state.host)
        url, token = f"{peer.url}/ui/", peer.token
    else:
        c = client()
        url = str(c.info().get("ui") or "")
        if not url:
            raise InvalidStateError(
                "vmkitd serves no TCP listener, and the dashboard is served there: stop "
                f"vmkitd (kill $(cat {c.paths.daemon_pid})) and start it with "
                "'vmkitd --listen 127.0.0.1:8765'")
        token = c.paths.token.read_text().strip()
    if as_json:
        render.print_json({"url": url})
        return
    say(url)
    if not no_open and _has_browser():
        import webbrowser

        webbrowser.open(f"{url}#token={token}")  # the page takes it and drops it from the URL


def _has_browser() -> bool:
    """A graphical session to open a browser in (a text one would take over the terminal)."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY")
                                            or os.environ.get("WAYLAND_DISPLAY"))


@command()
def vnc(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A running VM made with "
                                                             "--display vnc.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """Show where a VM's VNC server is and its password.

    The server listens on a Unix socket on the VM's host (a viewer such as TigerVNC's
    'vncviewer SOCKET' opens it); the dashboard shows the display in the browser. The
    password is made anew for each QEMU process, so it changes when the VM restarts.

    [bold]Example:[/bold]  vmkit run -d -n desk --display vnc && vmkit vnc desk
    """
    from . import render

    data = client().vnc_display(name)
    if as_json:
        render.print_json(data)
        return
    render.fields([("Socket", data["socket"]), ("Password", data["password"]),
                   ("Websocket", data["websocket"])])

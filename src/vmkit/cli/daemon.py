"""``vmkit daemon install``: a systemd unit that starts vmkitd at boot, so that VMs whose
restart policy says so ('vmkit run --restart') come back after a host reboot.

The unit is made here, for this machine: the Python that runs vmkit, the VMKIT_HOME in use
and, for root, the system instance of systemd (a user's own unit otherwise). vmkitd's VMs
are processes of their own that outlive it, so the unit kills only vmkitd when it stops
(``KillMode=process``): restarting or upgrading the daemon leaves every guest running.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .common import home_paths, say, state
from .registry import command, group

if TYPE_CHECKING:
    import typer

group("daemon", "Run vmkitd as a service of systemd, so it starts at boot.")

UNIT_NAME = "vmkitd.service"


def unit_text(python: str, home: Path, system: bool) -> str:
    """The systemd unit of a vmkitd run by ``python`` for VMKIT_HOME ``home``: for the
    system's systemd (root) or a user's own (``systemctl --user``)."""
    quoted_home = str(home).replace("%", "%%")  # systemd expands % specifiers
    return "\n".join([
        "[Unit]",
        "Description=vmkit daemon (vmkitd): QEMU virtual machines",
        *(["After=network-online.target", "Wants=network-online.target"] if system else []),
        "",
        "[Service]",
        "Type=simple",
        f'Environment="VMKIT_HOME={quoted_home}"',
        f"ExecStart={shlex.quote(python)} -m vmkit.daemon",
        "# VMs are QEMU processes that outlive vmkitd: stopping or restarting the service",
        "# must not kill them (the next vmkitd re-attaches to them).",
        "KillMode=process",
        "Restart=on-failure",
        "RestartSec=2",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if system else 'default.target'}",
        "",
    ])


def unit_path(system: bool) -> Path:
    """Where systemd looks for a unit the administrator (or the user) installed."""
    if system:
        return Path("/etc/systemd/system") / UNIT_NAME
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "systemd" / "user" / UNIT_NAME


@command("install", group="daemon")
def install(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False,
        help="Write the unit there instead ('-': standard output). Default: "
             "/etc/systemd/system/vmkitd.service for root, else "
             "~/.config/systemd/user/vmkitd.service.")] = None,
) -> None:
    """Write a systemd unit for vmkitd, so that it starts at boot and VMs made with
    --restart on-failure or always come back after a host reboot.

    The unit runs this vmkit's Python for this VMKIT_HOME. It is written, not enabled:
    the commands to enable it are printed. Stopping the service leaves the VMs running.

    [bold]Examples:[/bold]

      sudo vmkit daemon install && sudo systemctl enable --now vmkitd
      vmkit daemon install && systemctl --user enable --now vmkitd
      vmkit daemon install -o - | less   # look at it first
    """
    from ..paths import atomic_write

    if state.host:
        from ..errors import InvalidInputError

        raise InvalidInputError("vmkit daemon install writes a unit on this host: drop --host")
    system = os.geteuid() == 0
    text = unit_text(sys.executable, home_paths().root.absolute(), system)
    if output is not None and str(output) == "-":
        sys.stdout.write(text)
        return
    path = output or unit_path(system)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode(), 0o644)
    say(str(path))
    if output is None:
        ctl = "systemctl" if system else "systemctl --user"
        sys.stderr.write(
            f"Enable it with: {ctl} daemon-reload && {ctl} enable --now vmkitd\n"
            "(stop a vmkitd started by the CLI first: it holds VMKIT_HOME"
            f"{'' if system else '; and loginctl enable-linger for it to start at boot'})\n")

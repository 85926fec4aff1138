"""``vmkit run``: make a VM from an image (booted) or a snapshot (forked), then attach to
its console or print its name. vmkitd decides the rest (services/run.py): the SDK's
``Client.run`` and ``POST /v1/runs`` do the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .common import client, say
from .progress import follow
from .registry import command

if TYPE_CHECKING:
    import typer


@command()
def run(
    image: Annotated[str | None, typer.Argument(
        metavar="IMAGE", show_default=False,
        help="Image to boot: tiny (the default), debian, or one from 'vmkit image import'; "
             "tiny and debian are built on first use. With --cdrom and no IMAGE the disk "
             "starts blank.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", "-n", show_default=False,
        help="VM name, also its hostname (letters, digits, '-'). Default: a generated one "
             "such as brave-otter.")] = None,
    cpus: Annotated[int, typer.Option("--cpus", help="Virtual CPUs, 1-64.")] = 1,
    memory: Annotated[str, typer.Option("--memory", "-m",
                                        help="Memory, e.g. 256M or 1G (MiB if no unit).")
                      ] = "256M",
    disk: Annotated[str | None, typer.Option(
        "--disk", show_default=False,
        help="Root disk size, e.g. 2G. Default: the image's size.")] = None,
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", "-p", metavar="[ADDR:]HOST:GUEST[/udp]", show_default=False,
        help="Forward a host port to a guest port; repeatable. ADDR defaults to 127.0.0.1: "
             "-p 8080:80, -p 0.0.0.0:5353:53/udp.")] = None,
    network: Annotated[list[str] | None, typer.Option(
        "--network", metavar="nat|restricted|none|NET", show_default=False,
        help="nat (default): the guest can reach out; restricted: no way out, port forwards "
             "still work; none: no network card (default with --disposable); or a private "
             "network ('vmkit net create'). Repeat it for more network cards.")] = None,
    detach: Annotated[bool, typer.Option(
        "--detach", "-d", help="Print the VM's name and return instead of attaching.")] = False,
    rm: Annotated[bool, typer.Option("--rm", help="Remove the VM when it stops.")] = False,
    restart: Annotated[str, typer.Option(
        "--restart", metavar="no|on-failure|always",
        help="Start the VM again by itself: on-failure after its QEMU died unasked (a crash, "
             "a host reboot: see 'vmkit daemon install'); always also after the guest shut "
             "down. Never after 'vmkit stop'.")] = "no",
    disposable: Annotated[bool, typer.Option(
        "--disposable", help="For untrusted software: no network card unless --network is "
                             "given, and when it stops the VM is removed with every change "
                             "it made (no image is ever written).")] = False,
    io_limit: Annotated[str | None, typer.Option(
        "--io-limit", metavar="[IOPS]iops,[BYTES]", show_default=False,
        help="Throttle the disk: operations and/or bytes per second, e.g. 300iops, 20M or "
             "300iops,20M.")] = None,
    source: Annotated[str | None, typer.Option(
        "--from", metavar="VM@SNAP|TEMPLATE", show_default=False,
        help="Fork it from a memory snapshot or template instead of booting (see "
             "'vmkit fork').")] = None,
    fast: Annotated[bool, typer.Option(
        "--fast", help="Fork it from a template of IMAGE made on first use (boot once, "
                       "snapshot) instead of booting: ready in about a second.")] = False,
    display: Annotated[str, typer.Option(
        "--display", metavar="none|vnc",
        help="vnc: give the VM a VNC server, shown in the dashboard ('vmkit ui'); 'vmkit "
             "vnc NAME' tells where it is and its password.")] = "none",
    cdrom: Annotated[str | None, typer.Option(
        "--cdrom", metavar="FILE.iso|IMAGE", show_default=False,
        help="Put an ISO in the VM's CD drive (imported into the image store on first use). "
             "The firmware boots the disk first and the CD when the disk is blank: install "
             "an OS with --cdrom FILE.iso --disk 8G --display vnc.")] = None,
    firmware: Annotated[str, typer.Option(
        "--firmware", metavar="bios|uefi",
        help="Firmware for installers and imported disks: bios (SeaBIOS) or uefi (OVMF).")
                        ] = "bios",
    ssh_key: Annotated[Path | None, typer.Option(
        "--ssh-key", metavar="FILE.pub", show_default=False,
        help="cloud-init images: the public key the user 'debian' accepts. Default: "
             "~/.ssh/id_ed25519.pub (or id_ecdsa, id_rsa), else a key vmkit makes for you.")
                             ] = None,
    user_data: Annotated[Path | None, typer.Option(
        "--user-data", metavar="FILE", show_default=False,
        help="cloud-init images: a #cloud-config file (users, packages, runcmd...), checked "
             "before boot.")] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", metavar="KEY=VALUE", show_default=False,
        help="cloud-init images: an environment variable for the guest's shells and your "
             "runcmd; repeatable.")] = None,
    group: Annotated[str | None, typer.Option(
        "--group", metavar="NAME", show_default=False,
        help="--cluster: the VM's placement group, for --spread or --pack.")] = None,
    spread: Annotated[bool | None, typer.Option(
        "--spread/--pack", show_default=False,
        help="--cluster: put the group's VMs on distinct hosts (refused when there are too "
             "few), or together on one.")] = None,
    on: Annotated[str | None, typer.Option(
        "--host", metavar="HOST", show_default=False,
        help="--cluster: run on this host, not where the scheduler would.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="--cluster: say why the host was chosen and others not.")
                       ] = False,
) -> None:
    """Create a VM, boot it and attach to its serial console.

    Returns once the guest is up (a few seconds). Without -d you land on the VM's serial
    console: press Enter for a prompt, Ctrl-] to detach (the VM keeps running). With -d only
    the VM's name is printed, so scripts can capture it.

    [bold]Examples:[/bold]

      vmkit run                        # a tiny VM with a generated name
      vmkit run -d -n web -p 8080:80   # in the background; host 8080 -> guest 80
      vmkit run -d --cpus 2 -m 1G --disk 4G --network restricted
      vmkit run --rm -n scratch        # removed once it stops
      NAME=$(vmkit run -d) && vmkit exec $NAME -- uname -a
      vmkit run -d --fast              # forked from a ready template of tiny
      vmkit run --disposable           # no network; gone, with all it wrote, when it stops
      vmkit run -d -n db --restart always   # back after a crash or a host reboot
      vmkit --cluster h1 run -d --group web --spread -v   # the scheduler picks the host
    """
    from .cluster import placement_rules, say_why

    c = client()
    op = c.start_run(image, name, **placement_rules(group, spread, on),
                     cpus=cpus, memory=memory, disk=disk, ports=publish or [],
                     network=network, auto_remove=rm, disposable=disposable,
                     io_limit=io_limit, display=display, cdrom=cdrom, firmware=firmware,
                     ssh_key=ssh_key, user_data=user_data, env=env, source=source, fast=fast,
                     restart=restart)
    name = op.target
    if verbose:
        say_why(c)
    follow(c, op, f"Running [bold]{name}[/bold]", transient=True)
    if not source and not fast and not (limits := c.info().limits).startswith("cgroup"):
        sys.stderr.write(f"warning: CPU and memory limits are {limits}\n")
    if detach:
        say(name)
        return
    from .console import attach_and_report

    attach_and_report(c, name)

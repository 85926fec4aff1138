"""``vmkit run``: make a VM from an image (booted) or a snapshot (forked), then attach to
its console or print its name. Its helpers name the VM when the user does not and turn
``--cdrom FILE.iso`` into a stored image.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .common import client, say
from .images import ensure_image
from .progress import follow
from .registry import command

if TYPE_CHECKING:
    import typer

    from ..client import Client


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
    """
    from ..errors import InvalidInputError, VmkitError
    from ..spec import make_spec

    c = client()
    name = _friendly_name(c) if name is None else name  # --name '' is a mistake, not a wish
    ports = publish or []
    net = network or ["none" if disposable else "nat"]
    image = image or (None if cdrom else "tiny")
    # Check the request here first, so a typo fails before an image build.
    make_spec(name, image, cpus, memory, disk, ports, net, rm, disposable=disposable,
              io_limit=io_limit, display=display, firmware=firmware,
              cdrom=None if cdrom is None else "cd", env=env)
    if (source or fast) and (cdrom or ssh_key or user_data or env):
        raise InvalidInputError("a fork runs as its source was made: drop --cdrom, --ssh-key, "
                                "--user-data and -e")
    if display != "none" and (source or fast):
        raise InvalidInputError("a fork runs as its source was made: drop --display")
    if io_limit and (source or fast):
        raise InvalidInputError("a fork runs as its source was made: drop --io-limit")
    if len(net) > 1 and (source or fast):
        raise InvalidInputError("a fork has one network card, as its source: give one --network")
    if disposable and (source or fast):
        raise InvalidInputError("--disposable boots a fresh VM: drop --from/--fast")
    if (source or fast) and disk:
        raise InvalidInputError("a fork has its source's disk: drop --disk with --from/--fast")
    if source and fast:
        raise InvalidInputError("--from and --fast both choose what to fork: give one")
    from .provision import read_inputs

    # The user's files are checked before anything is built or booted.
    provision = read_inputs(ssh_key, user_data, env) if ssh_key or user_data or env else {}
    if not source:
        ensure_image(c, "tiny")  # also what vmkitd probes KVM with
        if image == "debian":
            ensure_image(c, image)
        if image and c.get_image(image).get("cloud_init"):
            provision = provision or read_inputs(None, None, None)
        elif provision:
            raise InvalidInputError(f"--ssh-key, --user-data and -e are for images with "
                                    f"cloud-init (debian); {image or 'a blank disk'} has none")
    if cdrom:
        cdrom = _cdrom_image(c, cdrom)
    from . import render

    if fast:
        with render.busy(f"Preparing the template of {image} (first use only)..."):
            source = c.fast_template(image or "tiny", cpus, memory, net[0])["name"]
    if source:
        with render.busy(f"Forking {name} from {source}..."):
            c.fork(source, name, ports, net[0], rm)
    else:
        waiting = "Booting" + (" and provisioning" if provision else "")
        with render.busy(f"{waiting} {name}..."):
            vm = c.create_vm(name, image=image, cpus=cpus, memory=memory, disk=disk,
                             ports=ports, network=net, auto_remove=rm, disposable=disposable,
                             io_limit=io_limit, display=display, cdrom=cdrom,
                             firmware=firmware, **provision)
        if (done := vm.get("cloud_init")) and done["status"] != "done":
            raise VmkitError(f"cloud-init failed in {name}: {done['detail']}. The VM runs on: "
                             f"see 'vmkit exec {name} -- cloud-init status --long'")
        if not (limits := c.info().get("limits", "")).startswith("cgroup"):
            sys.stderr.write(f"warning: CPU and memory limits are {limits}\n")
    if detach:
        say(name)
        return
    from .console import attach_and_report

    attach_and_report(c, name)


ADJECTIVES = (
    "agile amber bold brave bright brisk calm clever cosmic crisp curious daring eager fancy "
    "fearless fluffy gentle giddy glad golden happy hardy humble jolly keen kind lively lucky "
    "mellow merry mighty nimble noble plucky polite proud quick quiet rapid shiny silent sleek "
    "snappy spry steady sunny swift tidy vivid wise witty zesty").split()
NOUNS = (
    "badger beaver bison cheetah condor crane dingo dolphin eagle falcon ferret finch fox "
    "gazelle gecko heron ibis jackal koala lemur lynx marmot marten moose narwhal ocelot otter "
    "owl panda pelican penguin puffin quokka rabbit raven robin salmon seal sparrow stoat swan "
    "tapir tiger toucan turtle walrus weasel wombat yak zebra").split()


def _friendly_name(c: Client) -> str:
    """adjective-noun, lowercase, not taken by an existing VM."""
    import random

    taken = {vm["name"] for vm in c.list_vms()}
    for _ in range(50):
        candidate = f"{random.choice(ADJECTIVES)}-{random.choice(NOUNS)}"
        if candidate not in taken:
            return candidate
    return f"{candidate}-{random.randrange(10000)}"


def _cdrom_image(c: Client, cdrom: str) -> str:
    """The image name of --cdrom. A path (it has a '/' or ends in .iso) is imported on first
    use under the file's name; a later run reuses that image while the file is unchanged."""
    import re

    from ..errors import InvalidInputError, NotFoundError

    if "/" not in cdrom and not cdrom.lower().endswith(".iso"):
        return cdrom  # an image name; vmkitd says if there is none
    path = Path(cdrom).expanduser().absolute()
    name = re.sub(r"[^A-Za-z0-9-]+", "-", path.stem).strip("-")[:63] or "cdrom"
    try:
        image = c.get_image(name)
    except NotFoundError:
        follow(c, c.import_image(name, path), f"Importing [bold]{name}[/bold]")
        return name
    try:
        stat = path.stat()
    except OSError as e:
        raise InvalidInputError(f"cannot read {cdrom}: {e.strerror}") from None
    if image["kind"] == "iso" and image.get("source") == {
            "path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
        return name
    raise InvalidInputError(
        f"image {name} exists and is not this file as it is now: use --cdrom {name} for the "
        f"stored one, or 'vmkit image import {cdrom} --name NAME' for this one")

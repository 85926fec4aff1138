"""The ``image`` group: build, import, list, inspect and remove images; and ``ensure_image``,
which builds one on first use for ``run`` and ``import``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .common import client, each, say
from .progress import follow
from .registry import command, group

if TYPE_CHECKING:
    import typer

    from ..client import Client
    from .render import Record


IMAGE_HELP = """Build, import, list, inspect and remove VM images.

[bold]Examples:[/bold]

  vmkit image build                  # build the tiny image
  vmkit image build debian           # Debian with cloud-init and ssh (a few minutes)
  vmkit image import disk.vmdk --name old-app
  vmkit image ls
"""

group("image", IMAGE_HELP)


@command("ls", group="image")
def image_ls(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List images.

    [bold]Example:[/bold]  vmkit image ls
    """
    images = client().list_images()
    from . import render

    if as_json:
        render.print_json(images)
        return
    render.table(
        ("NAME", "KIND", "DISK", "SIZE", "DIGEST", "CREATED", "DESCRIPTION"),
        ((i["name"], i["kind"], i["disk"], render.size(i["size"]),
          i["digest"][:12], render.ago(i["created"]), i.get("description", ""))
         for i in images))


@command("build", group="image")
def image_build(
    builder: Annotated[str, typer.Argument(
        metavar="BUILDER", help="What to build: tiny or debian.")] = "tiny",
    name: Annotated[str | None, typer.Option(
        "--name", "-n", show_default=False,
        help="The image's name. Default: the builder's (tiny, debian).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild it even if it exists.")
                     ] = False,
    release: Annotated[str, typer.Option("--release", help="debian: bookworm or trixie.")
                       ] = "bookworm",
    size: Annotated[str, typer.Option("--size", help="debian: the root disk's size (a VM "
                                      "can have a bigger one: run --disk).")] = "4G",
    packages: Annotated[str, typer.Option(
        "--packages", metavar="A,B,...", help="debian: more Debian packages to install.")
                        ] = "",
    minimal: Annotated[bool, typer.Option(
        "--minimal", help="debian: without ssh and cloud-init, for a quick build that still "
                          "boots to the guest agent.")] = False,
) -> None:
    """Build an image from Debian packages, showing progress; prints its name when done.

    tiny: busybox, a small Debian kernel and the guest agent; ready in ~15 s, and built on
    first use by 'vmkit run'. debian: Debian with systemd, the cloud kernel, the guest agent,
    openssh-server and cloud-init, made with debootstrap in a few minutes (vmkitd must be
    root). Packages are cached, so a rebuild downloads nothing new. Ctrl-C cancels; nothing
    half-built is kept.

    [bold]Examples:[/bold]

      vmkit image build
      vmkit image build debian
      vmkit image build debian --release trixie --name trixie --packages git,curl
      vmkit image build tiny --force   # rebuild, e.g. for newer packages
    """
    from rich.markup import escape

    from ..errors import InvalidInputError

    if builder not in ("tiny", "debian"):
        raise InvalidInputError(f"no builder {builder!r}: use tiny or debian (for other "
                                "images: 'vmkit image import FILE --name NAME')")
    name = name or builder
    c = client()
    options = {} if builder == "tiny" else {
        "release": release, "size": size, "packages": packages, "minimal": minimal}
    op = c.build_image(name, force=force, builder=builder, **options)
    follow(c, op, f"Building image [bold]{escape(name)}[/bold]")
    say(name)


@command("import", group="image")
def image_import(
    source: Annotated[Path, typer.Argument(
        metavar="FILE|DEVICE", help="A disk image (qcow2, raw, vmdk, vdi), an ISO, or a "
                                    "block device, on this host.")],
    name: Annotated[str, typer.Option("--name", "-n", help="The image's name.")],
) -> None:
    """Add a disk image or an ISO to the image store; prints its name when done.

    The format is found by looking at the file (qemu-img), not at its name. qcow2 and raw
    disks are stored as they are, vmdk and vdi converted to qcow2, and an ISO kept for
    'vmkit run --cdrom'. Corrupt, unbootable and unknown files are refused. Stored images
    never change: each VM writes to its own overlay.

    [bold]Examples:[/bold]

      vmkit image import ~/Downloads/debian-12-genericcloud-amd64.qcow2 --name deb12
      vmkit run deb12 --firmware uefi --display vnc
      vmkit image import ~/isos/alpine-virt.iso --name alpine
      vmkit run --cdrom alpine --disk 4G --display vnc
    """
    from rich.markup import escape

    c = client()
    follow(c, c.import_image(name, source.expanduser()), f"Importing [bold]{escape(name)}[/bold]")
    say(name)


@command("rm", group="image")
def image_rm(names: Annotated[list[str], typer.Argument(
        metavar="NAME", help="One or more images.", show_default=False)]) -> None:
    """Remove images no VM uses.

    [bold]Example:[/bold]  vmkit image rm tiny
    """
    c = client()
    each(names, c.remove_image)


@command("inspect", group="image")
def image_inspect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The image.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """Show an image's details.

    [bold]Example:[/bold]  vmkit image inspect tiny
    """
    image = client().get_image(name)
    from . import render

    if as_json:
        render.print_json(image)
        return
    render.fields([
        ("Name", image["name"]),
        ("Kind", image["kind"]),
        ("Digest", image["digest"]),
        ("Description", image.get("description", "")),
        ("Disk", f"{image['disk']} ({image.get('format', 'raw')})"),
        ("Boots", image.get("bootable") or "its own kernel"),
        ("cloud-init", "yes" if image.get("cloud_init") else "no"),
        ("Size", f"{render.size(image['size'])} on this host"),
        ("Created", render.when(image["created"])),
    ])


def ensure_image(c: Client, image: str) -> None:
    """Build ``image`` (tiny or debian) with a progress bar if this host has none yet."""
    from ..errors import ConflictError, NotFoundError

    try:
        c.get_image(image)
    except NotFoundError:
        try:
            _build(c, image, force=False)
        except ConflictError:  # another client built it meanwhile
            c.get_image(image)


def _build(c: Client, image: str, force: bool) -> Record:
    """Start an image build and follow it with a progress bar on stderr."""
    from rich.markup import escape

    return follow(c, c.build_image(image, force=force),
                  f"Building image [bold]{escape(image)}[/bold]")

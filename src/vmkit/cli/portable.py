"""``vmkit export`` and ``vmkit import``: a VM as one portable file (vmkit's own format, OVA
or libvirt), and back.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .common import client, say
from .images import ensure_image
from .progress import transfer_progress
from .registry import command

if TYPE_CHECKING:
    import typer


class ExportFormat(StrEnum):
    vmkit = "vmkit"
    ova = "ova"
    libvirt = "libvirt"


@command("export")
def export(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM (running or stopped).")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="PATH", show_default=False,
        help="The file to write (for --format libvirt, a new directory).")],
    format: Annotated[ExportFormat, typer.Option(
        "--format", "-f", case_sensitive=False,
        help="vmkit: for 'vmkit import' on any vmkit host; ova: OVF 1.0 + VMDK for "
             "VirtualBox/VMware; libvirt: domain XML + qcow2 + kernel for 'virsh define'."
    )] = ExportFormat.vmkit,
    memory: Annotated[bool, typer.Option(
        "--memory", help="Include the running VM's memory: on import it resumes where it "
                         "was, processes and all (vmkit format).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write a VM to one portable file; it keeps running meanwhile.

    The disk's layers are flattened into one standalone disk, so the file needs nothing
    else from this host. With --memory the guest pauses for a moment while its memory is
    saved with the disk. The SHA-256 of the file is printed; 'vmkit import' checks every
    member against the checksums inside.

    [bold]Examples:[/bold]

      vmkit export web -o web.vmkit
      vmkit export web -o web.vmkit --memory     # resumes where it was on import
      vmkit export web -o web.ova --format ova
      vmkit export web -o /var/lib/libvirt/images/web --format libvirt
      virsh define /var/lib/libvirt/images/web/web.xml && virsh start web
    """
    from . import render

    c = client()
    with transfer_progress(f"Exporting {name}", before="flattening the disk") as on_progress:
        done = c.export_vm(name, output, format.value, memory, on_progress)
    if as_json:
        render.print_json(done)
        return
    sys.stderr.write(f"Wrote {done['path']} ({render.size(done['bytes'])}), sha256 "
                     f"{done['sha256']}\n")
    say(done["path"])


@command("import")
def import_(
    path: Annotated[Path, typer.Argument(
        metavar="FILE", help="A 'vmkit export' file, an OVA, or a qcow2/raw/vmdk disk image.",
        exists=True, dir_okay=False, readable=True)],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", show_default=False,
        help="Name of the new VM. Default: the exported VM's name (for a disk image, the "
             "file's). A new name makes a copy with its own identity (hostname, MAC).")
    ] = None,
    image: Annotated[str | None, typer.Option(
        "--image", show_default=False,
        help="For a disk image: the image whose kernel boots it (default tiny).")] = None,
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", "-p", metavar="[ADDR:]HOST:GUEST[/udp]", show_default=False,
        help="Port forwards instead of the exported ones (e.g. for a copy beside the "
             "original); repeatable.")] = None,
    no_ports: Annotated[bool, typer.Option(
        "--no-ports", help="Drop the exported port forwards.")] = False,
) -> None:
    """Make a VM of an exported file and bring it up.

    A vmkit export comes back as it was: running from its saved memory, paused, or stopped
    (an export without memory of a running VM boots). An OVA or a disk image boots; its disk
    must be one ext4 root filesystem, as vmkit's own exports are. The file is checked
    against its checksums first: a truncated or altered file is refused, and nothing is made.

    [bold]Examples:[/bold]

      vmkit import web.vmkit
      vmkit import web.vmkit --name web-copy -p 8081:80
      vmkit --host lab import web.vmkit     # on another vmkit host
    """
    from ..errors import ConflictError, NotFoundError
    from ..formats import bundle

    c = client()
    manifest = bundle.manifest_of(path)
    if manifest is not None:  # check here what can be checked before the upload
        vm_name = name or manifest.get("vm", {}).get("spec", {}).get("name")
        try:
            c.get_vm(str(vm_name))
            raise ConflictError(f"a VM named {vm_name} already exists; import it under "
                                "another name with --name")
        except NotFoundError:
            pass
        if (image_name := (manifest.get("image") or {}).get("name")) == "tiny":
            ensure_image(c, image_name)
    elif (image or "tiny") == "tiny":
        ensure_image(c, "tiny")
    with transfer_progress(f"Importing {path.name}", after="checking and starting") as on_progress:
        vm = c.import_vm(path, name, image, [] if no_ports else publish, on_progress)
    sys.stderr.write(f"Imported {vm['name']} ({vm['state']})\n")
    say(vm["name"])

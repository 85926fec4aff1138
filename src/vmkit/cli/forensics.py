"""Looking at a VM from the outside, without disturbing its guest: memory dumps, resource
use, disk changes and network captures.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .common import client, say
from .progress import transfer_progress
from .registry import command

if TYPE_CHECKING:
    from collections.abc import Sequence

    import typer

    from .render import Record


@command()
def dump(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The running (or paused) VM.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False,
        help="The file to write: an ELF core of the guest's memory.")],
) -> None:
    """Write the guest's memory to a file, for crash, gdb or volatility.

    The guest pauses while its memory is written (about a second per GiB) and then runs on.

    [bold]Example:[/bold]  vmkit dump web -o web.elf && strings web.elf | grep -c password
    """
    from . import render

    c = client()
    with transfer_progress(f"Dumping {name}", before="writing the memory") as on_progress:
        done = c.dump_vm(name, output, on_progress)
    sys.stderr.write(f"Wrote {done['path']} ({render.size(done['bytes'])})\n")
    say(done["path"])


@command()
def stats(
    names: Annotated[list[str] | None, typer.Argument(
        metavar="[NAME]...", help="VMs to show. Default: all.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Show them anew every --interval seconds until Ctrl-C, as "
                              "'docker stats' does.")] = False,
    interval: Annotated[float, typer.Option(
        "--interval", metavar="SECONDS", min=0.5, help="Time between readings with --watch.")
    ] = 2.0,
) -> None:
    """Show CPU, memory, disk and network use of VMs, like 'docker stats --no-stream' (or,
    with --watch, like 'docker stats').

    CPU is the share of one host CPU used since the last reading (or over a quarter second),
    memory the QEMU process's resident memory against what the guest was given. Network
    counters are the guest's own, read through its agent. vmkitd serves the same counters
    to Prometheus at /metrics.

    [bold]Examples:[/bold]

      vmkit stats
      vmkit stats -w web db            # refreshed every 2 s until Ctrl-C
      vmkit stats --json | jq '.[] | {name, cpu_percent}'
    """
    import time

    c = client()
    while True:
        rows = [c.stats(n) for n in (names or [vm["name"] for vm in c.list_vms()])]
        if watch and sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")  # the new table replaces the old one
        _stats_table(rows, as_json)
        if not watch:
            return
        time.sleep(interval)


def _stats_table(rows: Sequence[Record], as_json: bool) -> None:
    from . import render

    if as_json:
        render.print_json(rows)
        return

    def pair(a: str, b: str, vm: Record) -> str:
        return (f"{render.size(vm[a])} / {render.size(vm[b])}" if vm.get(a) is not None
                else "-")

    render.table(["NAME", "STATE", "CPU %", "MEM / LIMIT", "DISK READ / WRITE",
                  "NET RX / TX"],
                 [[vm["name"], vm["state"],
                   f"{vm['cpu_percent']:.1f}" if vm.get("cpu_percent") is not None else "-",
                   pair("memory_rss_bytes", "memory_limit_bytes", vm),
                   pair("disk_read_bytes", "disk_write_bytes", vm),
                   pair("net_rx_bytes", "net_tx_bytes", vm)] for vm in rows])


@command()
def diff(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    before: Annotated[str | None, typer.Argument(
        metavar="[SNAP]", help="Compare from this snapshot. Default: the image the VM was "
                               "made from.", show_default=False)] = None,
    after: Annotated[str | None, typer.Argument(
        metavar="[SNAP2]", help="Compare to this snapshot. Default: the disk now.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List the files added (A), removed (D) and changed (C) on a VM's disk.

    The filesystems are read from the host side (e2fsprogs' debugfs): nothing is mounted,
    nothing runs in the guest, and a running VM is not disturbed. Only files the guest has
    written to its disk count: flush with 'vmkit exec NAME -- sync' first.

    [bold]Examples:[/bold]

      vmkit diff web                    # since it was made from its image
      vmkit diff web before-install     # since that snapshot
      vmkit diff web s1 s2 --json
    """
    from . import render

    changes = client().diff(name, before, after)
    if as_json:
        render.print_json(changes)
        return
    for c in changes:
        say(f"{c['change'][0].upper().replace('R', 'D')} {c['path']}")


@command()
def capture(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The running VM.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False,
        help="The pcap file to write (tshark -r FILE, wireshark).")],
    duration: Annotated[float | None, typer.Option(
        "--duration", "-t", metavar="SECONDS", min=0.1, show_default=False,
        help="Stop after this long. Default: until Ctrl-C.")] = None,
    stop: Annotated[bool, typer.Option(
        "--stop", help="Stop a capture started earlier (e.g. with --detach) and write it.")
    ] = False,
    detach: Annotated[bool, typer.Option(
        "--detach", "-d", help="Start capturing and return; end it with --stop.")] = False,
) -> None:
    """Record the VM's network traffic, both ways, into a pcap file.

    Every packet of its network card is kept whole, as QEMU sees it (filter-dump). The
    guest notices nothing.

    [bold]Examples:[/bold]

      vmkit capture web -o web.pcap              # until Ctrl-C
      vmkit capture web -o web.pcap -t 10        # ten seconds
      vmkit capture web -d -o x; ...; vmkit capture web --stop -o web.pcap
    """
    import time

    from ..formats import files
    from . import render

    c = client()
    if not stop:
        files.check_destination(output.absolute(), False)
        c.start_capture(name)
        if detach:
            return
        sys.stderr.write(f"Capturing {name}'s traffic; "
                         f"{'Ctrl-C to stop' if duration is None else f'{duration:g} s'}.\n")
        try:
            time.sleep(duration if duration is not None else 1e9)
        except KeyboardInterrupt:
            pass
    done = c.stop_capture(name, output)
    sys.stderr.write(f"Wrote {done['path']} ({render.size(done['bytes'])})\n")
    say(done["path"])

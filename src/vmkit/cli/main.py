"""The ``vmkit`` command: docker-like verbs over the SDK (``vmkit.Client``). It parses input and
renders output; vmkitd (started on demand) does the work.

Startup time matters (``vmkit ls`` should feel instant), so importing this module imports
nothing heavy: commands register with ``@command`` into a plain list, and the Typer app is
built from it only when a command line needs parsing (``build_app``). The SDK and Rich are
imported inside the commands that use them (tables are plain text, see ``render``), and plain
``vmkit ls`` skips Typer altogether (``_fast_ls``).

Errors are caught in one place, ``main``: one red line on stderr, exit status 1 (125 for
``exec``, whose other statuses are the guest command's), never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    import typer

    from ..client import Client

HELP = """Run and manage QEMU virtual machines.

vmkit starts its daemon, vmkitd, on first use; every command talks to it.

[bold]Examples:[/bold]

  vmkit run -d -n web -p 8080:80     # boot a VM in the background
  vmkit ls                           # list VMs
  vmkit exec web -- uname -a         # run a command in it
  vmkit console web                  # its serial console; Ctrl-] detaches
  vmkit rm -f web                    # stop and remove it
"""
SNAPSHOT_HELP = """Save a VM's disk and memory, list, restore and remove snapshots.

A snapshot of a running VM holds its memory too: restoring it brings the VM back to that
moment, processes and all. Snapshots form a tree: restore an older one and snapshot again
to branch.

[bold]Examples:[/bold]

  vmkit snapshot create web before-upgrade
  vmkit snapshot ls web
  vmkit snapshot restore web before-upgrade
  vmkit fork web@before-upgrade web-test     # a new VM from it, in a moment
"""
HOST_HELP = """Other vmkit hosts, to drive with 'vmkit --host NAME ...'.

A host serves its API with 'vmkitd --listen ADDR:PORT' (add --tls-cert/--tls-key for TLS)
and shows its token with 'vmkit host token'.

[bold]Examples:[/bold]

  vmkit host token                                        # on the other host
  vmkit host add lab http://10.0.0.5:8765 --token TOKEN   # here
  vmkit --host lab ls
"""
TEMPLATE_HELP = """Keep snapshots as named templates to fork VMs from.

[bold]Examples:[/bold]

  vmkit template create web --name web-base  # snapshot running web, keep it
  vmkit run --from web-base -n web2          # a ready VM in well under a second
  vmkit template ls
"""
NET_HELP = """Private networks: VMs on one reach each other by IP and by name.

Under root each is a Linux bridge with its own DHCP and DNS (dnsmasq); an --isolated one has
no route out, and the host answers its VMs only DHCP and DNS. Without root each is a switch
inside vmkitd (QEMU sockets, DHCP and DNS served by vmkitd), always isolated.

[bold]Examples:[/bold]

  vmkit net create lab --isolated
  vmkit run -d -n a --network lab; vmkit run -d -n b --network lab
  vmkit exec a -- ping -c1 b
  vmkit net ls; vmkit net rm lab
"""
IMAGE_HELP = """Build, import, list, inspect and remove VM images.

[bold]Examples:[/bold]

  vmkit image build                  # build the tiny image
  vmkit image build debian           # Debian with cloud-init and ssh (a few minutes)
  vmkit image import disk.vmdk --name old-app
  vmkit image ls
"""

# (group, name, typer command options, function); group "" is the top level.
_COMMANDS: list[tuple[str, str, dict[str, Any], Callable[..., Any]]] = []


def command(name: str | None = None, group: str = "", **options: Any
            ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a CLI command. Its parameters are annotated with ``typer.Option`` and
    ``typer.Argument`` as usual; the annotations are strings until ``build_app`` imports
    Typer and Typer evaluates them."""
    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        _COMMANDS.append((group, name or f.__name__, options, f))
        return f
    return register


def build_app() -> typer.Typer:
    """The Typer app with every registered command."""
    global typer, Names, StopTimeout  # the string annotations of the commands name them
    import typer

    Names = Annotated[list[str], typer.Argument(metavar="NAME", help="One or more VMs.",
                                                show_default=False)]
    StopTimeout = Annotated[float, typer.Option(
        "--timeout", "-t", metavar="SECONDS",
        help="How long to wait for a clean shutdown before forcing the VM off.")]
    settings = {"help_option_names": ["-h", "--help"]}
    app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, rich_markup_mode="rich",
                      context_settings=settings)
    groups = {name: typer.Typer(help=_prose(text), no_args_is_help=True,
                                context_settings=settings)
              for name, text in (("image", IMAGE_HELP), ("snapshot", SNAPSHOT_HELP),
                                 ("template", TEMPLATE_HELP), ("host", HOST_HELP),
                                 ("net", NET_HELP))}
    groups[""] = app
    app.callback()(_root)
    for group, name, options, f in _COMMANDS:
        groups[group].command(name, help=_help(f), **options)(f)
    for group_name, typer_group in groups.items():
        if group_name:
            app.add_typer(typer_group, name=group_name)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # for tests: typer.testing.CliRunner().invoke(main.app, [...])
        return build_app()
    raise AttributeError(name)


class _State:
    home: Path | None = None
    host: str | None = None  # --host: another vmkit host, by its registered name
    client: Client | None = None
    error_exit = 1  # exit status for vmkit's own errors; exec makes it 125


_state = _State()


def client() -> Client:
    """The SDK client for this invocation, made on first use (vmkitd is started if needed)."""
    if _state.client is None:
        from ..client import Client

        if _state.host:
            _state.client = Client.for_host(_state.host, home=_state.home)
        else:
            _state.client = Client(home=_state.home, autostart=True)
    return _state.client


def _help(f: Callable[..., Any]) -> str:
    """A command's help from its docstring, wrapping like prose: the lines of each paragraph
    are joined, but indented ones (examples) stay as written. Typer's Rich help would keep
    every newline of the docstring otherwise."""
    import inspect

    return _prose(inspect.cleandoc(f.__doc__ or ""))


def _prose(text: str) -> str:
    paragraphs = text.split("\n\n")
    # Typer dedents the help text again; an empty markup tag at the start of each example
    # line renders as nothing but keeps its indentation.
    return "\n\n".join(
        "\n".join("[dim][/dim]" + line for line in p.split("\n")) if p.startswith(" ")
        else p.replace("\n", " ") for p in paragraphs)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _root(
    home: Annotated[Path | None, typer.Option(
        "--home", envvar="VMKIT_HOME", show_default=False, metavar="PATH",
        help="vmkit's state directory: VMs, images and the daemon's socket. "
             "Default: ~/.local/share/vmkit (/var/lib/vmkit for root).")] = None,
    host: Annotated[str | None, typer.Option(
        "--host", "-H", envvar="VMKIT_HOST", show_default=False, metavar="NAME",
        help="Run the command on another vmkit host ('vmkit host add' registers it).")
                    ] = None,
) -> None:
    _state.home = home
    _state.host = host


# --- run -------------------------------------------------------------------------------

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
        _ensure_image(c, "tiny")  # also what vmkitd probes KVM with
        if image == "debian":
            _ensure_image(c, image)
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
        _say(name)
        return
    _attach(c, name)


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
        _follow(c, c.import_image(name, path), f"Importing [bold]{name}[/bold]")
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


def _ensure_image(c: Client, image: str) -> None:
    from ..errors import ConflictError, NotFoundError

    try:
        c.get_image(image)
    except NotFoundError:
        try:
            _build(c, image, force=False)
        except ConflictError:  # another client built it meanwhile
            c.get_image(image)


def _build(c: Client, image: str, force: bool) -> dict[str, Any]:
    """Start an image build and follow it with a progress bar on stderr."""
    from rich.markup import escape

    return _follow(c, c.build_image(image, force=force),
                   f"Building image [bold]{escape(image)}[/bold]")


def _follow(c: Client, op: dict[str, Any], title: str) -> dict[str, Any]:
    """Follow an operation to its end with a progress bar on stderr; raise if it failed.
    Ctrl-C cancels an image build or import (vmkitd removes what it made so far)."""
    from rich.markup import escape

    from ..errors import VmkitError
    from rich.progress import (
        BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn)

    from . import render

    columns = (SpinnerColumn(), TextColumn(title), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=render.err()) as progress:
        task = progress.add_task(escape(op.get("message") or "starting"), total=1.0)

        def on_progress(op: dict[str, Any]) -> None:
            progress.update(task, completed=op.get("progress") or 0.0,
                            description=escape(op.get("message") or ""))

        try:
            return c.wait_operation(op["id"], on_progress, interval=0.1)
        except KeyboardInterrupt:
            if op["kind"] not in ("image-build", "image-import"):
                raise
            progress.update(task, description="cancelling...")
            c.cancel_operation(op["id"])
            with contextlib.suppress(VmkitError):
                c.wait_operation(op["id"], interval=0.2)
    sys.stderr.write("Cancelled: nothing was stored.\n")
    raise KeyboardInterrupt


def _attach(c: Client, name: str) -> None:
    from .console import DETACHED, attach

    if attach(c, name) == DETACHED:
        sys.stderr.write(f"\r\nDetached from {name}; it keeps running. "
                         f"Reattach with 'vmkit console {name}'.\n")
    else:
        sys.stderr.write(f"\r\n{name} stopped.\n")
    sys.stderr.flush()


# --- listing and inspecting ----------------------------------------------------------

@command("ls")
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Names only.")] = False,
) -> None:
    """List VMs.

    [bold]Examples:[/bold]

      vmkit ls
      vmkit ls -q | xargs vmkit stop   # stop every VM
      vmkit ls --json | jq '.[] | select(.state == "running") | .name'
    """
    vms = None if _state.host else _local_get("/v1/vms")
    if vms is None:
        vms = client().list_vms()
    if as_json:
        from .render import print_json

        print_json(vms)
        return
    if quiet:
        sys.stdout.write("".join(vm["name"] + "\n" for vm in vms))
        return
    from . import render

    now = _now()
    render.table(
        ("NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "PORTS", "CREATED"),
        ((vm["name"], render.state(vm), render.image(vm), str(vm["cpus"]), vm["memory"],
          render.ports(vm), render.ago(vm["created"], now))
         for vm in vms))


def _now() -> float:
    import time

    return time.time()


@command()
def inspect(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """Show everything about a VM.

    [bold]Examples:[/bold]

      vmkit inspect web
      vmkit inspect web --json | jq .state
    """
    vm = client().get_vm(name)
    from . import render

    if as_json:
        render.print_json(vm)
        return
    pairs = [
        ("Name", vm["name"]),
        ("State", render.state(vm)),
        ("Image", render.image(vm)),
        ("CPUs", str(vm["cpus"])),
        ("Memory", vm["memory"]),
        ("Disk", vm["disk"] or "the image's size"),
        ("Network", vm["network"]),
        ("MAC", vm["mac"]),
        ("Ports", render.ports(vm) or "-"),
        ("CD", vm.get("cdrom") or "-"),
        ("Firmware", vm.get("firmware", "bios")),
        ("QEMU PID", str(vm["pid"]) if vm.get("pid") else "-"),
        ("Auto-remove", "yes" if vm["auto_remove"] else "no"),
        ("Disposable", "yes" if vm.get("disposable") else "no"),
        ("Snapshot", vm.get("snapshot") or "-"),
        ("Forked from", vm.get("forked_from") or "-"),
        ("Created", render.when(vm["created"])),
        ("Started", render.when(vm.get("started"))),
    ]
    if vm.get("reason"):
        pairs.append(("Reason", vm["reason"]))
    render.fields(pairs)


# --- lifecycle -------------------------------------------------------------------------

if TYPE_CHECKING:
    Names = list[str]
    StopTimeout = float
else:
    Names = StopTimeout = None  # build_app makes them Annotated[..., typer.Argument/Option]


def _each(names: list[str], action: Any) -> None:
    """Apply ``action`` to every name, printing each that succeeds; report failures and go
    on with the others, then exit 1 if any failed."""
    from ..errors import DaemonError, VmkitError

    failed = False
    for name in names:
        try:
            action(name)
        except DaemonError:
            raise  # no daemon: every other name would fail the same way
        except VmkitError as e:
            from .render import error

            error(e.message)
            failed = True
        else:
            _say(name)
    if failed:
        raise SystemExit(1)


@command()
def start(names: Names) -> None:
    """Start stopped VMs; returns when their guests are up.

    [bold]Example:[/bold]  vmkit start web db
    """
    c = client()
    _each(names, c.start_vm)


@command()
def stop(
    names: Names,
    timeout: StopTimeout = 20.0,
) -> None:
    """Shut VMs down cleanly (forcing them off after --timeout).

    [bold]Examples:[/bold]

      vmkit stop web
      vmkit stop -t 5 $(vmkit ls -q)   # stop every VM, 5 s grace each
    """
    c = client()
    _each(names, lambda n: c.stop_vm(n, timeout=timeout))


@command()
def kill(names: Names) -> None:
    """Force VMs off at once, like pulling the plug.

    [bold]Example:[/bold]  vmkit kill web
    """
    c = client()
    _each(names, c.kill_vm)


@command()
def restart(
    names: Names,
    timeout: StopTimeout = 20.0,
) -> None:
    """Stop VMs cleanly and boot them again.

    [bold]Example:[/bold]  vmkit restart web
    """
    c = client()
    _each(names, lambda n: c.restart_vm(n, timeout=timeout))


@command()
def pause(names: Names) -> None:
    """Freeze running VMs (their memory stays; CPUs stop).

    [bold]Example:[/bold]  vmkit pause web && vmkit resume web
    """
    c = client()
    _each(names, c.pause_vm)


@command()
def resume(names: Names) -> None:
    """Unfreeze paused VMs.

    [bold]Example:[/bold]  vmkit resume web
    """
    c = client()
    _each(names, c.resume_vm)


@command()
def rm(
    names: Names,
    force: Annotated[bool, typer.Option("--force", "-f",
                                        help="Kill running VMs instead of refusing.")] = False,
) -> None:
    """Remove VMs and their disks. Running VMs need -f (or 'vmkit stop' first).

    [bold]Examples:[/bold]

      vmkit rm web
      vmkit rm -f $(vmkit ls -q)       # remove every VM
    """
    c = client()
    _each(names, lambda n: c.remove_vm(n, force=force))


# --- guest access ----------------------------------------------------------------------

@command()
def console(name: Annotated[str, typer.Argument(metavar="NAME", help="A running VM.")]) -> None:
    """Attach to a VM's serial console.

    Press Enter for a prompt; Ctrl-] detaches and leaves the VM running. Everything else,
    Ctrl-C included, goes to the guest. Returns by itself when the VM stops.

    [bold]Example:[/bold]  vmkit console web
    """
    c = client()
    c.get_vm(name)  # starts vmkitd if needed and says clearly when there is no such VM
    _attach(c, name)


@command()
def resize(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A stopped VM.")],
    cpus: Annotated[int | None, typer.Option("--cpus", help="Virtual CPUs, 1-64.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", "-m",
                                               help="Memory, e.g. 512M or 2G.")] = None,
    disk: Annotated[str | None, typer.Option(
        "--disk", help="The disk's new size, e.g. 8G; disks only grow.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The VM as JSON.")] = False,
) -> None:
    """Give a stopped VM other CPUs or memory, or a bigger disk.

    The guest sees the change at its next start; the tiny image grows its root filesystem
    to fill a bigger disk as it boots.

    [bold]Example:[/bold]  vmkit stop web && vmkit resize web --cpus 2 -m 1G --disk 8G
    """
    from . import render

    vm = client().resize_vm(name, cpus, memory, disk)
    if as_json:
        render.print_json(vm)
        return
    _say(f"{name}: {vm['cpus']} CPU{'s' if vm['cpus'] > 1 else ''}, {vm['memory']} memory"
         f"{', disk ' + vm['disk'] if vm['disk'] else ''}; start it with 'vmkit start {name}'")


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
    """
    from ..errors import InvalidStateError
    from . import render

    if _state.host:
        from .. import hosts

        peer = hosts.get(_home_paths(), _state.host)
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
    _say(url)
    if not no_open and _has_browser():
        import webbrowser

        webbrowser.open(f"{url}#token={token}")  # the page takes it and drops it from the URL


def _has_browser() -> bool:
    """A graphical session to open a browser in (a text one would take over the terminal)."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY")
                                            or os.environ.get("WAYLAND_DISPLAY"))


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
    _state.error_exit = 125
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

    def chunks() -> Any:
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


# --- snapshots, forks, templates ---------------------------------------------------------

@command("create", group="snapshot")
def snapshot_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    snap: Annotated[str | None, typer.Argument(
        metavar="[SNAP]", help="Snapshot name. Default: snap1, snap2, ...",
        show_default=False)] = None,
    no_memory: Annotated[bool, typer.Option(
        "--no-memory", help="The disk only, even of a running VM (the filesystems are frozen "
                            "for the moment it takes).")] = False,
) -> None:
    """Snapshot a VM: its disk and, while it runs, its memory and devices.

    A running VM pauses only for the save (about 0.1-0.3 s for 256 MiB); a stopped VM gets a
    disk snapshot. Prints the snapshot's name.

    [bold]Examples:[/bold]

      vmkit snapshot create web before-upgrade
      vmkit snapshot create web --no-memory
    """
    from . import render

    with render.busy(f"Snapshotting {name}..."):
        made = client().create_snapshot(name, snap, memory=not no_memory)
    _say(made["name"])


@command("ls", group="snapshot")
def snapshot_ls(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List a VM's snapshots as a tree; * marks the one its current state descends from.

    [bold]Example:[/bold]  vmkit snapshot ls web
    """
    from . import render

    snaps = client().list_snapshots(name)
    if as_json:
        render.print_json(snaps)
        return
    now = _now()
    render.table(
        ("NAME", "CREATED", "SIZE", "MEMORY", "PARENT", "USED BY"),
        ((("* " if s["current"] else "  ") + "  " * depth + s["name"],
          render.ago(s["created"], now), render.size(s["size"]),
          "paused" if s["paused"] and s["memory"] else "yes" if s["memory"] else "no",
          s["parent"] or "-", ", ".join(s["forks"] + s["templates"]) or "-")
         for depth, s in render.tree(snaps)))


@command("restore", group="snapshot")
def snapshot_restore(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    snap: Annotated[str, typer.Argument(metavar="SNAP", help="The snapshot.")],
) -> None:
    """Bring a VM back to a snapshot; what happened since is gone.

    With memory, the VM runs on from that moment (its processes too); a disk-only snapshot
    leaves a stopped VM stopped and reboots a running one.

    [bold]Example:[/bold]  vmkit snapshot restore web before-upgrade
    """
    from . import render

    with render.busy(f"Restoring {name} to {snap}..."):
        client().restore_snapshot(name, snap)
    _say(name)


@command("rm", group="snapshot")
def snapshot_rm(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VM.")],
    snaps: Annotated[list[str], typer.Argument(metavar="SNAP...", help="Snapshots to remove.")],
) -> None:
    """Remove snapshots (refused for those forks or templates still use).

    [bold]Example:[/bold]  vmkit snapshot rm web snap1 snap2
    """
    c = client()
    _each(snaps, lambda s: c.remove_snapshot(name, s))


@command()
def fork(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE[@SNAP]", help="VM@SNAP, a template, or a running VM (snapshotted now).")],
    name: Annotated[str, typer.Argument(metavar="NEWNAME", help="The new VM.")],
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", "-p", metavar="[ADDR:]HOST:GUEST[/udp]", show_default=False,
        help="Forward a host port to a guest port; repeatable.")] = None,
    network: Annotated[str | None, typer.Option(
        "--network", metavar="nat|restricted|none", show_default=False,
        help="nat, restricted or none. Default: the source's.")] = None,
    rm: Annotated[bool, typer.Option("--rm", help="Remove the VM when it stops.")] = False,
) -> None:
    """Create a running VM from a memory snapshot, without booting.

    The fork maps the snapshot's memory copy-on-write and loads only device state, then gets
    its own hostname, MAC, machine-id, entropy and clock before it counts as ready. Forks of
    one snapshot share the memory neither has changed. Prints the new VM's name.

    [bold]Examples:[/bold]

      vmkit fork web@snap1 web-test
      vmkit fork web web2 -p 8081:80     # snapshot running web now, fork it
      vmkit fork web-base ci-42          # from a template
    """
    from . import render

    with render.busy(f"Forking {name} from {source}..."):
        client().fork(source, name, publish or [], network, rm)
    _say(name)


@command("create", group="template")
def template_create(
    source: Annotated[str, typer.Argument(
        metavar="NAME[@SNAP]", help="A running VM (snapshotted now) or VM@SNAP.")],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", show_default=False, help="The template's name. Default: NAME.")] = None,
) -> None:
    """Keep a memory snapshot as a named template, ready to fork.

    [bold]Examples:[/bold]

      vmkit template create web --name web-base
      vmkit run --from web-base -n web2
    """
    from . import render

    template = name or source.partition("@")[0]
    with render.busy(f"Making template {template}..."):
        client().create_template(template, source)
    _say(template)


@command("ls", group="template")
def template_ls(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List templates."""
    from . import render

    templates = client().list_templates()
    if as_json:
        render.print_json(templates)
        return
    now = _now()
    render.table(("NAME", "IMAGE", "CPUS", "MEMORY", "SIZE", "FROM", "FORKS", "CREATED"),
                 ((t["name"], t["image"] or "(blank)", str(t["cpus"]), f"{t['memory_mib']}M",
                   render.size(t["size"]), t["source"] or "-", str(len(t["forks"])),
                   render.ago(t["created"], now)) for t in templates))


@command("rm", group="template")
def template_rm(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Templates to remove.")],
) -> None:
    """Remove templates (refused while VMs forked from them need them)."""
    c = client()
    _each(names, c.remove_template)


# --- migration -------------------------------------------------------------------------

@command()
def migrate(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The running VM.")],
    to: Annotated[str | None, typer.Option(
        "--to", metavar="HOST", show_default=False,
        help="The destination, as 'vmkit host add' registered it.")] = None,
    postcopy: Annotated[bool, typer.Option(
        "--postcopy", help="Switch to post-copy: for guests that dirty memory faster than "
                           "the link carries it. The guest runs at the destination at once and "
                           "fetches its memory on demand: if the link breaks after that, the "
                           "guest is lost.")] = False,
    cancel: Annotated[bool, typer.Option(
        "--cancel", help="Cancel the VM's migration in progress.")] = False,
    verify: Annotated[bool | None, typer.Option(
        "--verify/--no-verify", show_default=False,
        help="Compare the guest's memory on both sides before it runs at the destination "
             "(costs downtime: about 0.4 s for 256 MiB). Default: on where the QEMU is not "
             "trusted to move busy guests whole (before 10.0, under TCG).")] = None,
    watch: Annotated[float | None, typer.Option(
        "--watch", metavar="SECONDS", show_default=False,
        help="How long the guest must run well at the destination before this host lets go "
             "of its paused copy. Default 30.")] = None,
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", "-p", metavar="[ADDR:]HOST:GUEST[/udp]", show_default=False,
        help="Port forwards the VM gets at the destination instead of its own; repeatable. "
             "Needed to move it to another vmkitd on this host: the VM holds its host ports "
             "here until the switch.")] = None,
) -> None:
    """Move a running VM to another vmkit host while its guest keeps running.

    Its disk is copied first (the guest goes on writing), then its memory; the guest stops
    only for the switch. The VM keeps its name, spec and port forwards (or gets those of
    -p). If anything fails, or you press Ctrl-C, it keeps running here, unchanged. The source
    keeps the paused guest until it has run well at the destination for --watch seconds; if
    it fails there (a kernel panic, a dead agent), it resumes here where it left off, and the
    seconds it ran there are lost.

    [bold]Examples:[/bold]

      vmkit host add lab http://10.0.0.5:8765 --token TOKEN
      vmkit migrate web --to lab
      vmkit migrate web --to lab2 -p 8081:80     # lab2: another vmkitd on this host
      vmkit migrate --cancel web
    """
    from .. import hosts
    from ..errors import InvalidInputError

    c = client()
    if cancel:
        c.cancel_migration(name)
        _say(name)
        return
    if not to:
        raise InvalidInputError("give the destination: --to HOST ('vmkit host ls' lists them)")
    peer = hosts.get(_home_paths(), to)
    op = c.migrate(name, peer.url, peer.token, peer.ca, postcopy, verify, watch, publish)
    try:
        done = _follow(c, op, f"Moving {name} to {to}")
    except KeyboardInterrupt:
        c.cancel_migration(name)
        with contextlib.suppress(Exception):
            c.wait_operation(op["id"])
        raise
    sys.stderr.write(done["message"] + "\n")
    _say(name)


# --- export and import -------------------------------------------------------------------

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
      vmkit export web -o web-libvirt --format libvirt && virsh define web-libvirt/web.xml
    """
    from . import render

    c = client()
    with _transfer_progress(f"Exporting {name}", before="flattening the disk") as on_progress:
        done = c.export_vm(name, output, format.value, memory, on_progress)
    if as_json:
        render.print_json(done)
        return
    sys.stderr.write(f"Wrote {done['path']} ({render.size(done['bytes'])}), sha256 "
                     f"{done['sha256']}\n")
    _say(done["path"])


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
            _ensure_image(c, image_name)
    elif (image or "tiny") == "tiny":
        _ensure_image(c, "tiny")
    with _transfer_progress(f"Importing {path.name}", after="checking and starting") as on_progress:
        vm = c.import_vm(path, name, image, [] if no_ports else publish, on_progress)
    sys.stderr.write(f"Imported {vm['name']} ({vm['state']})\n")
    _say(vm["name"])


@contextlib.contextmanager
def _transfer_progress(title: str, before: str = "", after: str = "") -> Any:
    """A bytes progress bar on stderr; the callback it yields takes (done, total). ``before``
    the first bytes and ``after`` the last, they say what vmkitd is doing."""
    from rich.markup import escape
    from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn, TransferSpeedColumn)

    from . import render

    columns = (SpinnerColumn(), TextColumn(escape(title)), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=render.err()) as progress:
        task = progress.add_task(before, total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None,
                            description="" if done < total else after)

        yield on_progress


# --- private networks -------------------------------------------------------------------

@command("create", group="net")
def net_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The network's name.")],
    subnet: Annotated[str | None, typer.Option(
        "--subnet", metavar="CIDR", show_default=False,
        help="e.g. 10.77.0.0/24. Default: a free /24 in 10.77.0.0/16.")] = None,
    isolated: Annotated[bool, typer.Option(
        "--isolated", help="No route out of the host; the host answers only DHCP and DNS.")
    ] = False,
) -> None:
    """Create a private network for VMs (attach them with 'vmkit run --network NAME')."""
    net = client().create_network(name, subnet, isolated)
    sys.stderr.write(f"Network {net['name']}: {net['subnet']}, gateway {net['gateway']}"
                     f"{', isolated' if net['isolated'] else ', NAT to the outside'}\n")
    _say(net["name"])


@command("ls", group="net")
def net_ls(
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """List private networks and the VMs on them."""
    from . import render

    nets = client().list_networks()
    if as_json:
        render.print_json(nets)
        return
    render.table(["NAME", "SUBNET", "DRIVER", "ISOLATED", "VMS"],
                 [[n["name"], n["subnet"], n["driver"],
                   "yes" if n["isolated"] else "no",
                   ", ".join(n["vms"]) or "-"] for n in nets])


@command("rm", group="net")
def net_rm(
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Networks to remove.")],
) -> None:
    """Remove private networks (refused while VMs use them)."""
    _each(names, client().remove_network)


# --- forensics ---------------------------------------------------------------------------

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
    with _transfer_progress(f"Dumping {name}", before="writing the memory") as on_progress:
        done = c.dump_vm(name, output, on_progress)
    sys.stderr.write(f"Wrote {done['path']} ({render.size(done['bytes'])})\n")
    _say(done["path"])


@command()
def stats(
    names: Annotated[list[str] | None, typer.Argument(
        metavar="[NAME]...", help="VMs to show. Default: all.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, unformatted.")
                       ] = False,
) -> None:
    """Show CPU, memory, disk and network use of VMs, like 'docker stats --no-stream'.

    CPU is the share of one host CPU used since the last reading (or over a quarter second),
    memory the QEMU process's resident memory against what the guest was given. Network
    counters are the guest's own, read through its agent. vmkitd serves the same counters
    to Prometheus at /metrics.
    """
    from . import render

    c = client()
    rows = [c.stats(n) for n in (names or [vm["name"] for vm in c.list_vms()])]
    if as_json:
        render.print_json(rows)
        return

    def pair(a: str, b: str, vm: dict[str, Any]) -> str:
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
        _say(f"{c['change'][0].upper().replace('R', 'D')} {c['path']}")


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
    _say(done["path"])


# --- other hosts -----------------------------------------------------------------------

@command("token", group="host")
def host_token() -> None:
    """Print this host's API token, for 'vmkit host add' on another host.

    The daemon makes it on its first start (VMKIT_HOME/run/token, mode 0600). It guards the
    API that 'vmkitd --listen ADDR:PORT' serves on TCP.
    """
    from ..errors import InvalidInputError

    if _state.host:
        raise InvalidInputError("a host's token can be read only on that host: run "
                                "'vmkit host token' there")
    c = client()
    c.info()  # the daemon runs, so the token exists
    _say(c.paths.token.read_text().strip())


@command("add", group="host")
def host_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A name for the host.")],
    url: Annotated[str, typer.Argument(
        metavar="URL", help="Its API: http(s)://ADDR:PORT, as its 'vmkitd --listen' serves.")],
    token: Annotated[str, typer.Option("--token", help="Its token ('vmkit host token' there).",
                                       show_default=False)],
    ca: Annotated[Path | None, typer.Option(
        "--ca", metavar="PEM", show_default=False,
        help="The CA that signed its TLS certificate, if not a public one.")] = None,
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Connect once to check the URL and token.")] = True,
) -> None:
    """Register another vmkit host, checking that it answers and takes the token.

    [bold]Example:[/bold]  vmkit host add lab https://10.0.0.5:8765 --token TOKEN --ca lab-ca.pem
    """
    from .. import hosts
    from ..client import Client
    from ..errors import UnauthorizedError

    peer = hosts.peer(name, url, token, ca)
    if check:
        with Client(url=peer.url, token=peer.token, ca=peer.ca) as remote:
            try:
                remote.info()
            except UnauthorizedError:
                raise UnauthorizedError(f"{peer.url} refused the token; copy it from "
                                        "'vmkit host token' on that host") from None
    hosts.add(_home_paths(), peer)
    _say(name)


@command("ls", group="host")
def host_ls(
    as_json: Annotated[bool, typer.Option("--json", help="JSON, without the tokens.")] = False,
) -> None:
    """List registered hosts (their tokens stay hidden)."""
    from .. import hosts
    from . import render

    peers = hosts.load(_home_paths()).values()
    if as_json:
        render.print_json([{"name": p.name, "url": p.url, "ca": p.ca} for p in peers])
        return
    render.table(("NAME", "URL", "CA"), ((p.name, p.url, p.ca or "-") for p in peers))


@command("rm", group="host")
def host_rm(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Hosts to forget.")],
) -> None:
    """Forget registered hosts (nothing changes on them)."""
    from .. import hosts

    _each(names, lambda n: hosts.remove(_home_paths(), n))


def _home_paths() -> Any:
    from ..paths import HomePaths, default_home

    return HomePaths(_state.home or default_home())


# --- images ----------------------------------------------------------------------------

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
    _follow(c, op, f"Building image [bold]{escape(name)}[/bold]")
    _say(name)


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
    _follow(c, c.import_image(name, source.expanduser()), f"Importing [bold]{escape(name)}[/bold]")
    _say(name)


@command("rm", group="image")
def image_rm(names: Annotated[list[str], typer.Argument(
        metavar="NAME", help="One or more images.", show_default=False)]) -> None:
    """Remove images no VM uses.

    [bold]Example:[/bold]  vmkit image rm tiny
    """
    c = client()
    _each(names, c.remove_image)


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


# --- host ------------------------------------------------------------------------------

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
    """Print vmkit's version."""
    from .. import __version__

    _say(f"vmkit {__version__}")


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
        code = _state.error_exit
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
        code = _state.error_exit
    finally:
        if _state.client is not None:
            _state.client.close()
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
    _state.home = Path(home) if home else None
    ls(as_json="--json" in flags, quiet=bool(flags & {"-q", "--quiet"}))
    return True


def _local_get(path: str) -> Any | None:
    """A GET answered by the local daemon without importing the HTTP client (see local.py)."""
    from ..paths import HomePaths, default_home
    from .local import get_json

    return get_json(HomePaths(_state.home or default_home()).socket, path)


def _fail(message: str) -> None:
    try:
        from .render import error

        error(message)
    except Exception:  # noqa: BLE001 - Rich failing must not hide the message
        sys.stderr.write(f"vmkit: {message}\n")


def _describe(e: Exception) -> str:
    """A sentence for an exception that is not a VmkitError (a bug, or a broken transport)."""
    import httpx

    log = _state.client.paths.daemon_log if _state.client else "vmkitd.log"
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

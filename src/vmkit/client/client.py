"""``vmkit.Client``: every call of vmkitd's REST API as a method that returns a model."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import NotFoundError, VmkitError, error_from_body
from ..paths import HomePaths, default_home
from ..spec import CLOUD_INIT_BUILDS
from . import answers as A
from .backups import BackupCalls
from .cluster import ClusterCalls
from .connection import LONG, PROVISION, Connection, seg
from .lookups import LookupCalls
from .lifecycle import LifecycleCalls
from .logs import LogCalls
from .terminal import TerminalCalls

if TYPE_CHECKING:
    from httpx_ws import WebSocketSession

    from ..models import (Capture, ExportedFile, FileChange, HostInfo, Image, Network,
                          Operation, SavedFile, Snapshot, Template, Vm, VmStats, VncDisplay)


@dataclass
class ExecResult:
    """What a command run in a guest by ``Client.exec`` did: its exit status and output."""
    exit_code: int
    stdout: bytes
    stderr: bytes


class Client(LifecycleCalls, BackupCalls, ClusterCalls, TerminalCalls, LookupCalls, LogCalls,
             Connection):
    """The Python SDK of vmkit: a connection to vmkitd, the daemon that runs the VMs.

    It can do all the ``vmkit`` command can (the command is built on it)::

        import vmkit

        with vmkit.Client() as c:
            vm = c.create_vm("web", ports=["8080:80"])   # boots; returns when the guest is up
            print(vm.state, vm.ports[0].host_port)        # running 8080
            r = c.exec("web", ["uname", "-a"])
            print(r.exit_code, r.stdout.decode())
            c.remove_vm("web", force=True)

    ``Client()`` talks to the local vmkitd over its Unix socket in VMKIT_HOME, and starts
    it if it is not running, as the ``vmkit`` command does (``autostart=False``: raise
    DaemonError instead). ``Client(url=..., token=...)``
    talks to another host's ``vmkitd --listen``; ``Client.for_host("lab")`` to one registered
    with 'vmkit host add'.

    Results are pydantic models from ``vmkit.models``, read by attribute: ``Vm``, ``Image``,
    ``Snapshot``, ``Operation``... (the dict-style reads of older versions, ``vm["state"]``,
    still work until vmkit 0.3). ``Client(plain=True)`` returns dicts instead, whose keys
    are also attributes, and never imports pydantic (the CLI does so).

    Failures raise a ``vmkit.VmkitError`` subclass whose message says what to do:
    ``NotFoundError``, ``ConflictError``, ``InvalidStateError``, ``InvalidInputError``,
    ``DaemonError`` when vmkitd cannot be reached...

    Names of VMs, images, snapshots, templates and networks are 1-63 letters, digits and '-'.
    """

    @classmethod
    def for_host(cls, name: str, home: Path | None = None, plain: bool = False) -> Client:
        """A client of the host registered as ``name`` ('vmkit host add'), with its URL,
        token and CA: ``with Client.for_host("lab") as lab: lab.list_vms()``."""
        from .. import hosts

        peer = hosts.get(HomePaths(home or default_home()), name)
        return cls(url=peer.url, token=peer.token, home=home, ca=peer.ca, plain=plain)

    # --- host and images --------------------------------------------------------------

    def info(self) -> HostInfo:
        """The daemon and its host: QEMU and its version, the accelerator (kvm or tcg), how
        CPU and memory limits are enforced, counts of VMs and images."""
        return self._call("GET", "/info", A.HOST_INFO)

    def list_images(self) -> list[Image]:
        """Every stored image: ``[i.name for i in c.list_images()]``."""
        return self._call("GET", "/images", A.IMAGES)

    def get_image(self, name: str) -> Image:
        """The image ``name``; raises NotFoundError if there is none."""
        return self._call("GET", f"/images/{seg(name, 'image')}", A.IMAGE)

    def build_image(self, name: str = "tiny", force: bool = False, builder: str | None = None,
                    **debian: Any) -> Operation:
        """Start building image ``name`` (builder tiny or debian, by default its name);
        returns the operation, which ``wait_operation`` follows. ``force`` rebuilds an
        existing image. ``debian``: release, size, packages (comma-separated) and minimal,
        for the debian builder::

            c.wait_operation(c.build_image("debian", release="trixie", packages="git").id)
        """
        params = {"force": force, **({"builder": builder} if builder else {}), **debian}
        return self._call("POST", f"/images/{seg(name, 'image')}/build", A.OPERATION,
                          params=params)

    def import_image(self, name: str, path: str | Path) -> Operation:
        """Start importing a disk image (qcow2, raw, vmdk, vdi), an ISO or a block device at
        ``path`` on the daemon's host as image ``name``; returns the operation."""
        return self._call("POST", f"/images/{seg(name, 'image')}/import", A.OPERATION,
                          json={"path": str(Path(path).absolute())})

    def remove_image(self, name: str) -> None:
        """Remove image ``name``; refused (ConflictError) while a VM uses it."""
        self._do("DELETE", f"/images/{seg(name, 'image')}")

    # --- operations -------------------------------------------------------------------

    def operation(self, op_id: str) -> Operation:
        """The operation ``op_id`` as it is now: its state, progress (0-1) and message."""
        return self._call("GET", f"/operations/{seg(op_id, 'operation')}", A.OPERATION)

    def cancel_operation(self, op_id: str) -> Operation:
        """Cancel a running image build or import; vmkitd removes what it made so far.
        Returns the operation, which soon ends failed ("cancelled: nothing was stored");
        ConflictError if it is not a running build or import."""
        return self._call("DELETE", f"/operations/{seg(op_id, 'operation')}", A.OPERATION)

    def wait_operation(self, op_id: str, on_progress: Callable[[Operation], None] | None = None,
                       interval: float = 0.25) -> Operation:
        """Poll an operation every ``interval`` seconds until it ends, calling
        ``on_progress(op)`` each time; returns it once it succeeded, raises its error
        (VmkitError) if it failed::

            op = c.build_image("tiny", force=True)
            c.wait_operation(op.id, lambda op: print(f"{op.progress:.0%} {op.message}"))
        """
        delay = min(0.01, interval)  # short at first: many operations end within a second
        while True:
            op = self.operation(op_id)
            if on_progress:
                on_progress(op)
            if op.state == "failed":
                raise VmkitError(op.error or "the operation failed")
            if op.state == "succeeded":
                return op
            time.sleep(delay)
            delay = min(delay * 2, interval)

    # --- VMs --------------------------------------------------------------------------

    def run(self, image: str | None = None, name: str | None = None, *,
            on_progress: Callable[[Operation], None] | None = None, **options: Any) -> Vm:
        """Do what ``vmkit run`` does and return the running VM: build the image if this
        host lacks it, then boot a new VM, or fork one (``source``: VM@SNAP, a template or a
        running VM; ``fast=True``: from a ready template of the image, made on first use).
        Starts vmkitd if it is not running. ``on_progress(op)`` hears how it goes::

            vm = c.run()                                   # tiny, a generated name
            vm = c.run("debian", "dev", cpus=2, memory="1G", ports=["8080:80"])
            vm = c.run(fast=True)                          # forked: ready in about a second
            vm = c.run(name="web2", source="web@before-upgrade")

        ``options`` are those of :meth:`start_run`, with the CLI's defaults."""
        op = self.start_run(image, name, **options)
        self.wait_operation(op.id, on_progress, interval=0.05)
        return self.get_vm(op.target)

    def start_run(self, image: str | None = None, name: str | None = None, *, cpus: int = 1,
                  memory: str = "256M", disk: str | None = None, ports: Iterable[str] = (),
                  network: str | list[str] | None = None, auto_remove: bool = False,
                  disposable: bool = False, io_limit: str | None = None,
                  display: str = "none", cdrom: str | None = None, firmware: str = "bios",
                  ssh_key: Path | None = None, user_data: Path | None = None,
                  env: list[str] | None = None, source: str | None = None,
                  fast: bool = False, restart: str = "no") -> Operation:
        """Start a run (see :meth:`run`); returns its operation (kind "run", target: the
        VM's name) once vmkitd has checked the request. ``image``: tiny by default (a blank
        disk with ``cdrom`` and no image); ``cdrom``: an image name or an ISO file's path
        (imported on first use). ``ssh_key`` (a .pub file, default: yours, else one vmkit
        makes), ``user_data`` (a #cloud-config file) and ``env`` (KEY=VALUE): cloud-init
        images only, read here. The rest as for :meth:`create_vm`."""
        if self.autostart and not self._answers():
            self.start_daemon()
        from .provision import read_inputs  # here: it imports YAML, which only runs need

        forked = source is not None or fast
        provision = read_inputs(ssh_key, user_data, env) if ssh_key or user_data or env else {}
        if not provision and not forked and self._cloud_init(image or (None if cdrom else "tiny")):
            provision = read_inputs(None, None, None)  # the caller's default key
        if cdrom is not None and ("/" in cdrom or cdrom.lower().endswith(".iso")):
            cdrom = str(Path(cdrom).expanduser().absolute())  # vmkitd imports it
        image = image or (None if cdrom else "tiny")  # a blank disk for an installer CD
        body = {"name": name, "image": image, "cpus": cpus, "memory": memory, "disk": disk,
                "ports": list(ports), "network": network, "auto_remove": auto_remove,
                "disposable": disposable, "io_limit": io_limit, "display": display,
                "cdrom": cdrom, "firmware": firmware, "source": source, "fast": fast,
                "restart": restart, **provision}
        return self._call("POST", "/runs", A.OPERATION, json=body)

    def _cloud_init(self, image: str | None) -> bool:
        """Whether VMs of ``image`` run cloud-init (an image not built yet: by its name)."""
        if image is None:
            return False
        try:
            return self.get_image(image).cloud_init
        except NotFoundError:
            return image in CLOUD_INIT_BUILDS


    def list_vms(self) -> list[Vm]:
        """Every VM, whatever its state: ``{vm.name: vm.state for vm in c.list_vms()}``."""
        return self._call("GET", "/vms", A.VMS)

    def get_vm(self, name: str) -> Vm:
        """VM ``name``; raises NotFoundError if there is none."""
        return self._call("GET", f"/vms/{seg(name)}", A.VM)

    def create_vm(self, name: str, image: str | None = "tiny", cpus: int = 1,
                  memory: str = "256M", disk: str | None = None, ports: Iterable[str] = (),
                  network: str | list[str] | None = None, auto_remove: bool = False,
                  disposable: bool = False, io_limit: str | None = None,
                  display: str = "none", cdrom: str | None = None, firmware: str = "bios",
                  ssh_keys: str | None = None, user_data: str | None = None,
                  env: dict[str, str] | None = None, restart: str = "no") -> Vm:
        """Create and boot a VM; returns it once its guest agent answers (and, for an image
        with cloud-init, once cloud-init is done: see the result's ``cloud_init``)::

            c.create_vm("web", cpus=2, memory="1G", ports=["8080:80"])
            c.create_vm("dev", image="debian", ssh_keys=Path("~/.ssh/id_ed25519.pub")
                        .expanduser().read_text(), env={"APP_ENV": "dev"})

        ``memory`` and ``disk``: sizes such as 512M or 8G. ``ports``: docker-style
        [ADDR:]HOSTPORT:GUESTPORT[/udp]. ``network``: nat by default (none for a
        ``disposable`` VM, removed with all it wrote when it stops), restricted (no way out
        but the port forwards), none, a private network's name, or a list of them (one NIC
        each). ``auto_remove``: remove the VM when it stops. ``io_limit``: disk throttling,
        e.g. "300iops,20M" (per second). ``display``: "vnc" for a VNC server
        (``vnc_display`` tells where). ``cdrom``: an ISO image in the CD drive; with
        ``image=None`` the disk starts blank (give ``disk``). ``firmware``: bios or uefi.
        ``ssh_keys``, ``user_data`` (#cloud-config text) and ``env``: cloud-init
        provisioning. ``restart``: "on-failure" or "always" to have vmkitd start the VM again
        when its QEMU dies (a crash, a host reboot) or, with always, when the guest shuts
        down; never after ``stop_vm``."""
        body = {"name": name, "image": image, "cpus": cpus, "memory": memory, "disk": disk,
                "ports": list(ports), "network": network, "auto_remove": auto_remove,
                "disposable": disposable, "io_limit": io_limit, "display": display,
                "cdrom": cdrom, "firmware": firmware, "ssh_keys": ssh_keys,
                "user_data": user_data, "env": env or {}, "restart": restart}
        return self._call("POST", "/vms", A.VM, json=body, timeout=PROVISION)

    def resize_vm(self, name: str, cpus: int | None = None, memory: str | None = None,
                  disk: str | None = None) -> Vm:
        """New CPUs, memory and/or a bigger disk for a stopped VM; the guest sees them at its
        next start: ``c.resize_vm("web", cpus=2, memory="1G", disk="8G")``."""
        return self._call("POST", f"/vms/{seg(name)}/resize", A.VM,
                          json={"cpus": cpus, "memory": memory, "disk": disk})

    def remove_vm(self, name: str, force: bool = False) -> None:
        """Remove a stopped VM and its disk; ``force`` kills a running one first."""
        self._do("DELETE", f"/vms/{seg(name)}", params={"force": force}, timeout=LONG)

    # --- snapshots, forks, templates ---------------------------------------------------

    def list_snapshots(self, vm: str) -> list[Snapshot]:
        """The snapshots of VM ``vm``; ``parent`` links them into a tree, and ``current``
        marks the one its state descends from."""
        return self._call("GET", f"/vms/{seg(vm)}/snapshots", A.SNAPSHOTS)

    def create_snapshot(self, vm: str, name: str | None = None, memory: bool = True
                        ) -> Snapshot:
        """Snapshot the disk, and memory + devices if the VM runs (unless ``memory=False``);
        ``name`` defaults to snap1, snap2...: ``c.create_snapshot("web", "before-upgrade")``."""
        return self._call("POST", f"/vms/{seg(vm)}/snapshots", A.SNAPSHOT,
                          json={"name": name, "memory": memory}, timeout=LONG)

    def get_snapshot(self, vm: str, name: str) -> Snapshot:
        """Snapshot ``name`` of VM ``vm``."""
        return self._call("GET", f"/vms/{seg(vm)}/snapshots/{seg(name, 'snapshot')}",
                          A.SNAPSHOT)

    def restore_snapshot(self, vm: str, name: str) -> Vm:
        """Bring VM ``vm`` back to snapshot ``name``; what happened since is gone. With memory
        the VM runs on from that moment; a disk-only snapshot leaves a stopped VM stopped and
        reboots a running one. Returns the VM."""
        return self._call("POST", f"/vms/{seg(vm)}/snapshots/{seg(name, 'snapshot')}/restore",
                          A.VM, timeout=LONG)

    def remove_snapshot(self, vm: str, name: str) -> None:
        """Remove a snapshot; refused (ConflictError) while forks or templates use it."""
        self._do("DELETE", f"/vms/{seg(vm)}/snapshots/{seg(name, 'snapshot')}", timeout=LONG)

    def fork(self, source: str, name: str, ports: Iterable[str] = (), network: str | None = None,
             auto_remove: bool = False) -> Vm:
        """A new running VM ``name`` from ``source``, without booting: VM@SNAPSHOT, a
        template, or a running VM (snapshotted now). It gets its own hostname, MAC and
        identity; ``network`` defaults to the source's::

            c.create_snapshot("web", "ready")
            twin = c.fork("web@ready", "web2", ports=["8081:80"])
        """
        body = {"source": source, "name": name, "ports": list(ports), "network": network,
                "auto_remove": auto_remove}
        return self._call("POST", "/forks", A.VM, json=body, timeout=LONG)

    def list_templates(self) -> list[Template]:
        """Every template: memory snapshots kept under a name, ready to fork."""
        return self._call("GET", "/templates", A.TEMPLATES)

    def create_template(self, name: str, source: str) -> Template:
        """Keep a snapshot as template ``name``: ``source`` is VM@SNAPSHOT, or a running VM
        (snapshotted now). ``fork(name, ...)`` then makes VMs of it."""
        return self._call("POST", "/templates", A.TEMPLATE,
                          json={"name": name, "source": source}, timeout=LONG)

    def fast_template(self, image: str = "tiny", cpus: int = 1, memory: str = "256M",
                      network: str = "nat") -> Template:
        """The template 'vmkit run --fast' forks, for these settings; made on first use:
        ``c.fork(c.fast_template().name, "quick")``."""
        body = {"image": image, "cpus": cpus, "memory": memory, "network": network}
        return self._call("POST", "/templates/fast", A.TEMPLATE, json=body, timeout=LONG)

    def remove_template(self, name: str) -> None:
        """Remove a template; refused (ConflictError) while VMs forked from it need it."""
        self._do("DELETE", f"/templates/{seg(name, 'template')}", timeout=LONG)

    # --- migration --------------------------------------------------------------------

    def migrate(self, name: str, url: str, token: str, ca: str | None = None,
                postcopy: bool = False, verify: bool | None = None,
                watch: float | None = None, ports: Iterable[str] | None = None
                ) -> Operation:
        """Start moving running VM ``name`` to the vmkit host at ``url`` (its API, with its
        ``token``, and ``ca`` to trust its TLS certificate) while the guest keeps running;
        returns the operation (follow it with ``wait_operation``). If the move fails the VM
        runs on here, unchanged::

            lab = vmkit.hosts.get(c.paths, "lab")
            c.wait_operation(c.migrate("web", lab.url, lab.token, lab.ca).id)

        ``postcopy``: switch to post-copy for guests that dirty memory faster than the link.
        ``verify``: compare the guest's memory on both sides before it runs there (default:
        where the QEMU is not trusted to); ``watch``: seconds the guest must run well there
        before this host lets go of it (default 30); ``ports``: port forwards it gets there
        instead of its own, e.g. ["8081:80"] (needed for a destination on this same host,
        whose ports the VM holds until the switch)."""
        body = {"url": url, "token": token, "ca": ca, "postcopy": postcopy, "verify": verify,
                "watch": watch, "ports": None if ports is None else list(ports)}
        return self._call("POST", f"/vms/{seg(name)}/migrate", A.OPERATION, json=body)

    def cancel_migration(self, name: str) -> None:
        """Cancel the migration of VM ``name``; it keeps running here."""
        self._do("DELETE", f"/vms/{seg(name)}/migrate")

    # --- export and import ------------------------------------------------------------

    def export_vm(self, name: str, dest: Path, format: str = "vmkit", memory: bool = False,
                  on_progress: Callable[[int, int], None] | None = None) -> ExportedFile:
        """Write VM ``name`` to the file ``dest`` (for ``format="libvirt"``, the new directory
        ``dest``); the VM keeps running meanwhile. ``format``: vmkit (for ``import_vm`` on
        any vmkit host), ova or libvirt. ``memory``: include the running VM's memory, so
        that it resumes where it was on import. ``on_progress(done, total)`` follows the
        bytes. Nothing is left at ``dest`` if it fails. Returns the path, size and SHA-256
        of what was written::

            done = c.export_vm("web", Path("web.vmkit"), memory=True)
            print(done.path, done.bytes, done.sha256)
        """
        from ..formats import files

        dest = Path(dest).absolute()
        unpacked = format == "libvirt"
        files.check_destination(dest, unpacked)
        body = {"format": format, "memory": memory, "directory": str(dest) if unpacked else None}
        saved = self._download(f"/vms/{seg(name)}/export", dest, unpacked, on_progress,
                               json=body)
        return A.EXPORTED_FILE.make(self.plain, path=saved.path, bytes=saved.bytes,
                                    sha256=saved.sha256, format=format)

    def import_vm(self, path: Path, name: str | None = None, image: str | None = None,
                  ports: Iterable[str] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> Vm:
        """Make a VM of the file ``path``: a vmkit export (it comes back as it was: running
        from its saved memory, paused, or stopped), an OVA or a disk image (they boot). The
        file is uploaded and checked against its checksums first. ``name``: default the
        exported VM's (a new one makes a copy with its own identity); ``image``: for a disk
        image, the image whose kernel boots it; ``ports``: port forwards instead of the
        exported ones. ``on_progress(done, total)`` follows the upload. Returns the VM."""
        path = Path(path)
        total = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            done = 0
            with open(path, "rb") as f:
                while data := f.read(1 << 20):
                    done += len(data)
                    yield data
                    if on_progress:
                        on_progress(done, total)

        params: dict[str, Any] = {k: v for k, v in (("name", name), ("image", image))
                                  if v is not None}
        if ports is not None:
            params["port"] = list(ports)
        return self._call("POST", "/imports", A.VM, params={**params, "filename": path.name},
                          content=chunks(), headers={"content-length": str(total)},
                          timeout=httpx.Timeout(30.0, read=None, write=None))

    # --- private networks -------------------------------------------------------------

    def list_networks(self) -> list[Network]:
        """Every private network, with the VMs on it."""
        return self._call("GET", "/networks", A.NETWORKS)

    def create_network(self, name: str, subnet: str | None = None, isolated: bool = False
                       ) -> Network:
        """A private network with DHCP and DNS that VMs join with
        ``create_vm(..., network=name)``: a Linux bridge when vmkitd runs as root, else a
        switch of vmkitd's, always isolated (see the result's ``driver``). ``subnet``: e.g.
        10.77.0.0/24, default a free /24; ``isolated``: no route out of the host."""
        return self._call("POST", "/networks", A.NETWORK,
                          json={"name": name, "subnet": subnet, "isolated": isolated})

    def remove_network(self, name: str) -> None:
        """Remove a private network; refused (ConflictError) while VMs use it."""
        self._do("DELETE", f"/networks/{seg(name, 'network')}")

    # --- looking into VMs -------------------------------------------------------------

    def vnc_display(self, name: str) -> VncDisplay:
        """The VNC server of a VM run with display vnc: its Unix socket and password (new for
        each QEMU process)."""
        return self._call("GET", f"/vms/{seg(name)}/display", A.VNC_DISPLAY)

    def stats(self, name: str) -> VmStats:
        """CPU, memory, disk and network counters of VM ``name``:
        ``c.stats("web").cpu_percent``."""
        return self._call("GET", f"/vms/{seg(name)}/stats", A.VM_STATS)

    def diff(self, name: str, before: str | None = None, after: str | None = None
             ) -> list[FileChange]:
        """Files added, removed and changed on the VM's disk from snapshot ``before`` (default:
        its image) to snapshot ``after`` (default: now), read from the host side::

            for f in c.diff("web", "before-upgrade"):
                print(f.change, f.path)
        """
        params = {k: v for k, v in (("from", before), ("to", after)) if v is not None}
        return self._call("GET", f"/vms/{seg(name)}/diff", A.FILE_CHANGES, params=params,
                          timeout=LONG)

    def dump_vm(self, name: str, dest: Path,
                on_progress: Callable[[int, int], None] | None = None) -> SavedFile:
        """Write the guest's memory to ``dest`` as an ELF core file (the guest pauses while
        it is taken). Returns the path, size and SHA-256 of what was written."""
        from ..formats import files

        dest = Path(dest).absolute()
        files.check_destination(dest, False)
        return self._download(f"/vms/{seg(name)}/dump", dest, False, on_progress)

    def start_capture(self, name: str) -> Capture:
        """Start recording the VM's network traffic; ``stop_capture`` ends it."""
        return self._call("POST", f"/vms/{seg(name)}/capture", A.CAPTURE)

    def stop_capture(self, name: str, dest: Path,
                     on_progress: Callable[[int, int], None] | None = None) -> SavedFile:
        """End the VM's capture and write it to ``dest`` as a pcap file::

            c.start_capture("web"); time.sleep(10)
            c.stop_capture("web", Path("web.pcap"))
        """
        from ..formats import files

        dest = Path(dest).absolute()
        files.check_destination(dest, False)
        return self._download(f"/vms/{seg(name)}/capture/stop", dest, False, on_progress)

    # --- guest access -----------------------------------------------------------------

    def exec_stream(self, name: str, argv: list[str] | str, stdin: bytes | None = None
                    ) -> Iterator[tuple[str, bytes | int]]:
        """Run ``argv`` in the guest (a string is split as a shell would, shlex.split, and
        run without a shell), yielding ("stdout"|"stderr", bytes) as the command writes,
        then ("exit", code)::

            for stream, data in c.exec_stream("web", ["ping", "-c3", "10.0.2.2"]):
                print(stream, data)
        """
        import shlex

        body: dict[str, Any] = {"argv": shlex.split(argv) if isinstance(argv, str) else argv}
        if stdin:
            body["stdin"] = base64.b64encode(stdin).decode()
        r = self._send("POST", f"/vms/{seg(name)}/exec", stream=True, json=body, timeout=None)
        try:
            for line in r.iter_lines():
                event = json.loads(line)
                if "exit_code" in event:
                    yield "exit", int(event["exit_code"])
                elif "error" in event:
                    raise error_from_body(event)
                else:
                    stream, data = next(iter(event.items()))
                    yield stream, base64.b64decode(data)
        finally:
            r.close()

    def exec(self, name: str, argv: list[str] | str, stdin: bytes | None = None
             ) -> ExecResult:
        """Run ``argv`` in the guest (no shell: give ``["sh", "-c", "..."]`` for one; a
        string such as ``"uname -a"`` is split as a shell would), with ``stdin`` as its
        input; returns its exit status and all its output::

            r = c.exec("web", ["sh", "-c", "echo $HOSTNAME"])
            assert r.exit_code == 0 and r.stdout == b"web\\n"
        """
        out, err, code = bytearray(), bytearray(), -1
        for stream, data in self.exec_stream(name, argv, stdin):
            if isinstance(data, int):
                code = data
            else:
                (out if stream == "stdout" else err).extend(data)
        return ExecResult(code, bytes(out), bytes(err))

    def read_file(self, name: str, path: str) -> Iterator[bytes]:
        """The guest file at absolute ``path`` as an iterator of byte chunks (read as they
        arrive, so a big file never sits in memory whole); join them for the bytes:
        ``b"".join(c.read_file("web", "/etc/hostname"))``. A missing file raises
        NotFoundError at the first chunk."""
        return self._stream(f"/vms/{seg(name)}/files", {"path": path}, LONG)

    def write_file(self, name: str, path: str, data: bytes | Iterable[bytes]) -> int:
        """Write ``data`` (bytes, or chunks of them) to the guest file at absolute ``path``;
        returns the number of bytes written: ``c.write_file("web", "/root/a.txt", b"hi")``."""
        written = self._call("PUT", f"/vms/{seg(name)}/files", A.JSON,
                             params={"path": path}, content=data, timeout=LONG)
        return int(written["bytes"])

    def console(self, name: str) -> AbstractContextManager[WebSocketSession]:
        """A websocket session to the VM's serial console (httpx_ws): bytes sent are typed
        into it, bytes received are what it prints::

            with c.console("web") as ws:
                ws.send_bytes(b"uname -a\\n")
                print(ws.receive_bytes())
        """
        from httpx_ws import connect_ws

        self.get_vm(name)  # starts the daemon if needed, and names a missing VM clearly
        return connect_ws(f"/v1/vms/{seg(name)}/console", self._http)

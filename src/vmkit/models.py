"""What vmkitd answers: the objects of its REST API, as pydantic models shared by both ends.

The API declares them as its routes' ``response_model`` (so they are also its OpenAPI
schema), and the SDK returns them: ``vmkit.Client().get_vm("web")`` is a :class:`Vm`, read by
attribute (``vm.state``, ``vm.ports[0].host_port``) with the types below.

    Vm           a virtual machine            Client.get_vm, list_vms, create_vm, start_vm...
    PortForward  one of a VM's port forwards  Vm.ports
    CloudInit    how provisioning ended       Vm.cloud_init (create_vm of a cloud-init image)
    Image        a stored image               Client.get_image, list_images
    Operation    a long task (build, import,  Client.build_image, import_image, migrate,
                 migration) and its progress  operation, wait_operation
    Snapshot     a VM's saved state           Client.list_snapshots, create_snapshot
    Template     a snapshot kept for forking  Client.list_templates, create_template
    Network      a private network            Client.list_networks, create_network
    VmStats      a VM's resource counters     Client.stats
    FileChange   a file changed on a disk     Client.diff
    VncDisplay   where a VM's VNC server is   Client.vnc_display
    HostInfo     the daemon and its host      Client.info
    Capture      a traffic capture started    Client.start_capture
    SavedFile    a file the SDK wrote         Client.dump_vm, stop_capture
    ExportedFile a VM the SDK exported        Client.export_vm

``Error`` is the body of every error answer (the SDK raises it as a ``vmkit.VmkitError``);
``RemoteHost``, ``MemoryDigest`` and ``IncomingReady`` are what two vmkitd say to each other.

Fields a newer vmkitd sends that a model does not know are ignored, never an error (see
``ApiModel``). This module imports nothing of vmkit's server side: the SDK and the CLI load it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _without_docstring(schema: dict[str, Any]) -> None:
    schema.pop("description", None)  # a model's, not its fields'


class ApiModel(BaseModel):
    """The base of every object vmkitd answers with: a pydantic model, read by attribute.

        vm = client.get_vm("web")
        vm.state, vm.ports[0].host_port, vm.model_dump()

    Unknown fields are ignored (``extra="ignore"``): an SDK older than the daemon it talks to
    keeps working and does not see what it does not know. ("allow" would keep them, but these
    models are also the API's response filter: vmkitd would then pass on any key its code
    returns and its OpenAPI schema would change.)

    Deprecated, until vmkit 0.3: the SDK returned plain dicts before 0.2, so a model also
    answers the dict-style reads old code makes: ``vm["state"]``, ``vm.get("cloud_init")``,
    ``"state" in vm``, ``vm.keys()`` (hence ``{**vm}``) and ``vm == {"name": ...}`` (compared
    with ``model_dump()``). ``json.dumps(vm)`` does not work: use ``vm.model_dump_json()``
    or ``json.dumps(vm.model_dump(mode="json"))``. Nested
    models answer the same way (``vm["ports"][0]["host_port"]``). Iterating a model yields
    (name, value) pairs, as for any pydantic model, so ``dict(vm)`` works too.
    """

    # The docstrings are written for Python's help(): the OpenAPI schema keeps to the fields'
    # descriptions, as it did before the models were shared.
    model_config = ConfigDict(extra="ignore", defer_build=True,
                              json_schema_extra=_without_docstring)

    # --- dict-style reads, deprecated: removed in vmkit 0.3 -------------------------------

    def __getitem__(self, key: str) -> Any:
        try:
            return self.__dict__[key]  # the fields' values, as pydantic keeps them
        except KeyError:
            extra = self.__pydantic_extra__
            if extra is not None and key in extra:
                return extra[key]
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` if the model has no such field (deprecated)."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        extra = self.__pydantic_extra__
        return key in self.__dict__ or (extra is not None and key in extra)

    def keys(self) -> list[str]:
        """The names of the fields, as a dict's keys (deprecated)."""
        return [*self.__dict__, *(self.__pydantic_extra__ or ())]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):  # the dict it used to be
            return self.model_dump() == dict(other)
        return super().__eq__(other)


# --- the API's objects ---------------------------------------------------------------------

class Error(ApiModel):
    """The body of every error answer; the SDK raises the matching ``vmkit.VmkitError``."""
    error: str = Field(description="Kind of error, e.g. not_found, conflict, invalid_input")
    message: str = Field(description="What is wrong and what to do about it")


class PortForward(ApiModel):
    """A host port forwarded to a guest port (``-p 8080:80``)."""
    host_addr: str
    host_port: int
    guest_port: int
    proto: Literal["tcp", "udp"]


class CloudInit(ApiModel):
    """How cloud-init provisioning of a new VM ended."""
    status: Literal["done", "error"]
    detail: str


class Vm(ApiModel):
    """A virtual machine: its spec, state and identity."""
    name: str
    state: Literal["starting", "running", "paused", "stopping", "stopped", "crashed"]
    image: str | None
    cpus: int
    memory: str
    memory_mib: int
    disk: str | None
    network: str
    mac: str
    pid: int | None
    ports: list[PortForward]
    auto_remove: bool
    disposable: bool = False
    io_iops: int | None = None
    io_bps: int | None = None
    networks: list[str] = []
    display: Literal["none", "vnc"] = "none"
    created: float
    started: float | None
    reason: str = Field(description="why the VM crashed, if it did")
    snapshot: str | None = Field(None, description="the snapshot its state descends from")
    forked_from: str | None = Field(None, description="VM@SNAP or template it was forked from")
    cdrom: str | None = None
    firmware: Literal["bios", "uefi"] = "bios"
    ssh_keys: str | None = Field(None, description="public keys the guest's user accepts")
    restart: Literal["no", "on-failure", "always"] = Field(
        "no", description="when vmkitd starts it again by itself (see VmCreate)")
    ips: list[str] = Field([], description="the guest's addresses, as its agent last "
                           "reported them (refreshed in the background; empty when stopped)")
    cloud_init: CloudInit | None = Field(None, description="on creation of a cloud-init "
                                         "image: how provisioning ended")


class Image(ApiModel):
    """A stored image VMs are made from: built (tiny, debian) or imported (disk, ISO)."""
    name: str
    digest: str
    kind: str
    size: int = Field(description="bytes used on disk")
    disk: str = Field(description="virtual size of the root disk")
    created: float
    format: str = Field("raw", description="the disk's format: raw or qcow2")
    description: str = ""
    bootable: str | None = Field(None, description="imported images: how the firmware boots "
                                 "it (mbr, gpt, bios, uefi, bios+uefi or unknown)")
    cloud_init: bool = Field(False, description="it provisions itself from --ssh-key, "
                             "--user-data and -e")
    source: dict[str, Any] | None = Field(None, description="imported images: the file's "
                                          "path, size and mtime_ns when it was imported")


class Operation(ApiModel):
    """A long task vmkitd runs in the background (an image build or import, a migration):
    follow it with ``Client.wait_operation``."""
    id: str
    kind: str
    target: str
    state: Literal["running", "succeeded", "failed"]
    progress: float
    message: str
    error: str | None
    created: float
    updated: float


class HostInfo(ApiModel):
    """The daemon and its host: QEMU, the accelerator, how limits are enforced, counts."""
    home: str
    pid: int
    qemu: str | None = Field(None, description="the QEMU binary VMs run with (VMKIT_QEMU)")
    qemu_version: str | None = None
    qemu_features: list[str] = Field([], description="what that QEMU offers and vmkit uses: "
                                     "machine types, memory backends, migration capabilities")
    accel: str | None
    accel_reason: str | None
    limits: str = Field("", description="how CPU and memory limits are enforced, or why not")
    vms: int
    images: int
    ui: str | None = Field(None, description="the dashboard's URL, when vmkitd serves TCP "
                                             "('vmkitd --listen')")


class HostUsage(ApiModel):
    """How busy this host is (the dashboard's host summary)."""
    cpus: int
    cpu_percent: float = Field(description="of all CPUs, over a quarter of a second")
    load: list[float] = Field(description="load averages over 1, 5 and 15 minutes")
    memory_total_bytes: int
    memory_used_bytes: int = Field(description="total less what is available")
    disk_path: str = Field(description="VMKIT_HOME, whose filesystem the disk figures are of")
    disk_total_bytes: int
    disk_used_bytes: int
    vms: int
    vms_running: int
    vm_cpus: int = Field(description="virtual CPUs of the VMs running")
    vm_memory_bytes: int = Field(description="memory given to the VMs running")


class Snapshot(ApiModel):
    """A VM's saved disk, and memory and devices if it ran: it can be restored or forked."""
    id: str
    name: str
    vm: str | None
    created: float
    memory: bool = Field(description="holds memory and device state, not only the disk")
    paused: bool = Field(description="the VM was paused when it was taken")
    size: int = Field(description="bytes on disk")
    parent: str | None = Field(description="the snapshot this one descends from")
    current: bool = Field(description="the VM's state descends from this snapshot")
    forks: list[str] = Field(description="VMs forked from it")
    templates: list[str]


class Template(ApiModel):
    """A memory snapshot kept under a name of its own, to fork VMs from."""
    name: str
    created: float
    image: str | None = Field(description="null: a blank disk installed from a CD")
    cpus: int
    memory_mib: int
    source: str | None = Field(description="VM@SNAPSHOT it was made from, if that VM exists")
    forks: list[str]
    size: int


class MemoryDigest(ApiModel):
    """Migration, between two vmkitd: the digest of a paused guest's memory."""
    digest: str = Field(description="BLAKE2b of the paused guest's memory and CPU state")


class RemoteHost(ApiModel):
    """Another vmkit host registered on this one ('vmkit host add')."""
    name: str
    url: str


class Network(ApiModel):
    """A private network VMs attach to ('vmkit net create')."""
    name: str
    subnet: str
    isolated: bool
    gateway: str
    driver: Literal["bridge", "switch"] = Field(
        description="bridge: a Linux bridge and TAP devices (vmkitd runs as root); switch: "
                    "QEMU sockets switched by vmkitd, always isolated (no root needed)")
    bridge: str = Field(description="the Linux bridge, if the driver is bridge")
    created: float
    vms: list[str]


class VmStats(ApiModel):
    """A VM's CPU, memory, disk and network counters; None where they cannot be read."""
    name: str
    state: str
    cpus: int
    memory_limit_bytes: int
    cpu_seconds: float | None = None
    cpu_percent: float | None = Field(None, description="of one CPU, since the last reading")
    memory_rss_bytes: int | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    disk_read_ops: int | None = None
    disk_write_ops: int | None = None
    net_rx_bytes: int | None = Field(None, description="as the guest counts it (agent)")
    net_tx_bytes: int | None = None
    net_rx_packets: int | None = None
    net_tx_packets: int | None = None
    ips: list[str] | None = Field(None, description="the guest's addresses (agent)")


class VncDisplay(ApiModel):
    """Where the VNC server of a VM made with display vnc listens, and its password."""
    name: str
    socket: str = Field(description="the VNC server's Unix socket on the VM's host")
    password: str = Field(description="VNC password, made for each QEMU process")
    websocket: str = Field(description="the API's websocket proxy to it (for noVNC)")


class FileChange(ApiModel):
    """A file added, removed or changed on a VM's disk between two states."""
    change: Literal["added", "removed", "changed"]
    path: str
    type: Literal["file", "dir", "link", "other"]


class IncomingReady(ApiModel):
    """Migration, between two vmkitd: where the destination waits for the disk and memory."""
    name: str
    address: str
    nbd_port: int
    migration_port: int


class Capture(ApiModel):
    """A traffic capture just started; ``Client.stop_capture`` writes it to a file."""
    vm: str
    capturing: bool


# --- what the SDK makes of the API's downloads ----------------------------------------------

class SavedFile(ApiModel):
    """A file the SDK wrote from what vmkitd sent: a memory dump or a traffic capture."""
    path: str = Field(description="where it was written, absolute")
    bytes: int = Field(description="how many bytes were written")
    sha256: str = Field(description="the SHA-256 of what was written, in hex")


class ExportedFile(SavedFile):
    """A VM the SDK exported (for the libvirt format, ``path`` is the directory)."""
    format: Literal["vmkit", "ova", "libvirt"]


# --- a cluster of hosts (vmkitd --cluster) ---------------------------------------------------

class ClusterHost(ApiModel):
    """A member of the cluster ('vmkit cluster hosts'): its state, capacity and use. A host
    that is down shows what it last published, or only its name and URL."""
    name: str
    url: str
    state: Literal["ready", "cordoned", "draining", "down"]
    cpus: int | None = Field(None, description="the host's CPUs")
    cpus_used: int | None = Field(None, description="vCPUs of its running VMs")
    memory_mib: int | None = Field(None, description="the host's memory")
    memory_used_mib: int | None = Field(None, description="memory of its running VMs")
    disk_free_bytes: int | None = Field(None, description="free space in its VMKIT_HOME")
    accel: str | None = None
    qemu_version: str | None = None
    images: list[tuple[str, str]] = Field([], description="(name, digest) of its images")
    vms: list[str] = Field([], description="the names of its VMs")
    seen: float | None = Field(None, description="when it last published its facts (epoch)")


class ClusterVm(Vm):
    """A VM of the cluster ('vmkit --cluster NAME ls'): a Vm, with the host it is on."""
    host: str


class Placement(ApiModel):
    """Where the cluster put (or finds) a VM, and why that host ('vmkit run -v')."""
    name: str
    host: str
    url: str = Field(description="the host's API, which serves the VM's own calls")
    why: dict[str, str] = Field({}, description="each host: why it was chosen, or why not")


# --- backups (vmkit backup) ------------------------------------------------------------------

class BackupRepo(ApiModel):
    """A borg repository backups go to ('vmkit backup repo ls')."""
    name: str
    location: str = Field(description="a path on the daemon's host, or ssh://USER@HOST/PATH")
    encryption: str = Field(description="borg's mode: none, repokey or repokey-blake2")


class Backup(ApiModel):
    """One backup of a VM, an archive in a borg repository ('vmkit backup ls')."""
    id: str = Field(description="VM.YYYYMMDDTHHMMSS (UTC), the archive's name")
    repo: str
    vm: str | None
    time: str = Field(description="when it was taken, ISO 8601 (local time of the daemon)")
    kind: Literal["full", "incremental"] | None
    memory: bool = Field(description="it holds memory and devices: restored, the VM runs on")
    size: int = Field(description="bytes of the disk image (and memory) it restores")
    deduplicated_size: int | None = Field(
        None, description="bytes it added to the repository when taken (null if unknown)")
    read_bytes: int = Field(0, description="bytes QEMU's backup job read from the running "
                                           "VM's disk (0: read from its disk chain)")
    base: str | None = Field(None, description="the backup an incremental one builds on")


class BackupSchedule(ApiModel):
    """A VM's backup schedule and how its runs went ('vmkit backup schedule ls')."""
    vm: str
    repo: str
    every: int = Field(description="seconds between backups")
    keep: dict[str, int] = Field(description="borg prune's rules: last, hourly, daily, weekly, "
                                             "monthly -> how many")
    next_run: float = Field(description="when the next backup is due (epoch)")
    last_run: float | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0
    missed: int = Field(0, description="runs that fell due while vmkitd was not running")

"""Request bodies of the REST API and their checks; with the response bodies, which live in
``vmkit.models`` (the SDK returns them too) and are re-exported here, they are its OpenAPI
schema.

Request bodies refuse fields they do not know. Names carry their pattern in the schema, and a
wrong one gets the same message from the API as from the CLI (spec.validate_name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from ..errors import InvalidInputError
# The response bodies, shared with the SDK: re-exported for the routes ("X as X").
from ..models import (CloudInit as CloudInit, Error as Error, FileChange as FileChange,
                      HostInfo as HostInfo, HostUsage as HostUsage, Image as Image, IncomingReady as IncomingReady,
                      MemoryDigest as MemoryDigest, Network as Network, Operation as Operation,
                      PortForward as PortForward, RemoteHost as RemoteHost, Snapshot as Snapshot,
                      Template as Template, Vm as Vm, VmStats as VmStats,
                      VncDisplay as VncDisplay)
from ..spec import DISPLAYS, FIRMWARES, NAME_PATTERN, validate_name

NAME_SCHEMA = {"type": "string", "pattern": f"^{NAME_PATTERN}$", "minLength": 1,
               "maxLength": 63}
SOURCE_SCHEMA = {"type": "string", "pattern": f"^{NAME_PATTERN}(@{NAME_PATTERN})?$",
                 "minLength": 1, "maxLength": 127}
MAX_ARGV_BYTES = 256 << 10  # all of exec's arguments together, as UTF-8
MAX_ARG_BYTES = 128 << 10  # one argument: Linux refuses longer ones (MAX_ARG_STRLEN)
MAX_STDIN_BYTES = 1 << 20  # exec's standard input, decoded: qemu-ga holds it all in memory


def checked(check: Callable[[Any], object]) -> AfterValidator:
    """A pydantic validator running one of vmkit's own checks: its InvalidInputError becomes
    a validation error with the same message (type "vmkit"), which app.py passes on as is."""
    def run(value: Any) -> Any:
        try:
            check(value)
        except InvalidInputError as e:
            raise PydanticCustomError("vmkit", "{message}", {"message": e.message}) from None
        return value
    return AfterValidator(run)


def _named(what: str) -> AfterValidator:
    """The check of the name of a ``what`` (VM, image...) as a field validator."""
    return checked(lambda v: validate_name(v, what))


def name_field(what: str) -> Any:
    """The type of a field that holds the name of a ``what``: checked, with its pattern in
    the schema. (Written out as ``Annotated[...]`` below, where mypy needs a type alias.)"""
    return Annotated[str, _named(what), WithJsonSchema(NAME_SCHEMA)]


def _check_source(text: str) -> None:
    vm, at, snap = text.partition("@")
    validate_name(vm, "VM" if at else "VM or template")
    if at:
        validate_name(snap, "snapshot")


def _check_networks(networks: str | list[str] | None) -> None:
    if isinstance(networks, list) and len(networks) > 8:
        raise InvalidInputError("network: a VM has at most 8 NICs")
    for name in [networks] if isinstance(networks, str) else networks or []:
        validate_name(name, "network")


VmName = Annotated[str, _named("VM"), WithJsonSchema(NAME_SCHEMA)]
# A port forward as the CLI's -p takes it; spec.parse_port checks it and says what is wrong.
PortText = Annotated[str, WithJsonSchema({
    "type": "string", "maxLength": 64,
    "pattern": r"^(\[[0-9a-fA-F:.]+\]:|[0-9.]+:)?[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp))?$"})]
Networks = Annotated[str | list[str] | None, checked(_check_networks), WithJsonSchema({
    "anyOf": [NAME_SCHEMA, {"type": "array", "items": NAME_SCHEMA, "maxItems": 8},
              {"type": "null"}]})]
ImageName = Annotated[str, _named("image"), WithJsonSchema(NAME_SCHEMA)]
SnapshotName = Annotated[str, _named("snapshot"), WithJsonSchema(NAME_SCHEMA)]
TemplateName = Annotated[str, _named("template"), WithJsonSchema(NAME_SCHEMA)]
HostName = Annotated[str, _named("host"), WithJsonSchema(NAME_SCHEMA)]
NetworkName = Annotated[str, _named("network"), WithJsonSchema(NAME_SCHEMA)]
Source = Annotated[str, checked(_check_source), WithJsonSchema(SOURCE_SCHEMA)]


# Fields of a few values: an enum in the schema, checked by spec.make_spec, whose message
# names the choices as the CLI's does ("invalid firmware 'efi': use bios or uefi").
Display = Annotated[str, Field(max_length=32), WithJsonSchema({"enum": list(DISPLAYS)})]
Firmware = Annotated[str, Field(max_length=32), WithJsonSchema({"enum": list(FIRMWARES)})]


EnvKey = Annotated[str, Field(max_length=128)]
EnvValue = Annotated[str, Field(max_length=4096)]


class Body(BaseModel):
    """A request body: a field it does not know is refused, never silently ignored."""
    model_config = ConfigDict(extra="forbid")


RestartPolicy = Literal["no", "on-failure", "always"]
RESTART_HELP = ("when vmkitd starts the VM again by itself: on-failure: after its QEMU died "
                "unasked (a crash, a host reboot); always: also after the guest shut down; "
                "never after a stop asked for")


class VmFields(Body):
    """A new VM's fields, but its name: VmCreate and RunCreate share them (core/request.py's
    VmRequest is what they become)."""
    image: ImageName | None = Field("tiny", description="null: a blank disk")
    cpus: int = Field(1, description="virtual CPUs, 1-64")
    memory: str = Field("256M", max_length=32, description="e.g. 256M, 1G (MiB if no unit)")
    disk: str | None = Field(None, max_length=32, description="disk size; default: the image's")
    ports: list[PortText] = Field([], max_length=64,
                             description="docker-style [ADDR:]HOSTPORT:GUESTPORT[/udp]",
                             examples=[["8080:80"]])
    network: Networks = Field(
        None, description="what its NICs attach to, one per item: nat (the default): "
                          "outbound NAT; restricted: no way out, port forwards only; the name "
                          "of a private network ('vmkit net create'); or none: no NIC (the "
                          "default of a disposable VM); an empty list: no NIC either",
        examples=[["lab", "nat"]])
    auto_remove: bool = Field(False, description="remove the VM when it stops")
    disposable: bool = Field(False, description="remove the VM and everything it wrote when "
                                                "it stops; no NIC unless a network is given")
    io_limit: str | None = Field(None, max_length=32, description="disk throttling: "
                                 "operations and/or bytes per second, e.g. 300iops,20M")
    display: Display = Field("none", description="vnc: a VNC server, reached "
                                            "through vmkitd ('vmkit vnc', the dashboard)")
    cdrom: ImageName | None = Field(None, description="an ISO image ('vmkit image "
                              "import') in the CD drive; with image null, installs an OS on a "
                              "blank disk of size 'disk'")
    firmware: Firmware = Field("bios", description="for images booted by "
                                              "firmware: SeaBIOS or UEFI (OVMF)")
    ssh_keys: str | None = Field(None, max_length=16384, description="cloud-init images: "
                                 "OpenSSH public keys of the user vmkit makes ('debian')")
    user_data: str | None = Field(None, max_length=1 << 20, description="cloud-init images: "
                                  "a #cloud-config document, checked before boot")
    env: dict[EnvKey, EnvValue] = Field({}, max_length=256, description="cloud-init images: "
                                        "environment variables for the guest and its runcmd")
    restart: RestartPolicy = Field("no", description=RESTART_HELP)


class VmCreate(VmFields):
    name: VmName = Field(description="1-63 letters, digits and '-'; also the guest's hostname",
                         examples=["web"])


class RunCreate(VmFields):
    """What ``vmkit run`` asks for: a VM as ``POST /v1/vms`` takes it, or a fork of one."""
    name: VmName | None = Field(None, description="null: a generated one, such as brave-otter")
    cdrom: str | None = Field(None, max_length=4096, description="an ISO image's name, or the "
                              "absolute path of an ISO file on the daemon's host (imported "
                              "on first use)")
    source: Source | None = Field(None, description="fork it from VM@SNAPSHOT, a template or "
                                  "a running VM instead of booting")
    fast: bool = Field(False, description="fork it from a ready template of the image, made "
                                          "on first use: ready in about a second")


class ImageImport(Body):
    path: str = Field(max_length=4096, description="absolute path of a disk image, ISO or "
                      "block device on the daemon's host", examples=["/srv/isos/alpine.iso"])


def _check_argv(argv: list[str]) -> None:
    for i, arg in enumerate(argv):
        if "\0" in arg:
            raise InvalidInputError(f"argv[{i}] contains a NUL byte, which no command can be "
                                    "given: pass binary data on stdin")
        if len(arg.encode(errors="surrogatepass")) > MAX_ARG_BYTES:
            raise InvalidInputError(f"argv[{i}] is longer than {MAX_ARG_BYTES >> 10} KiB, the "
                                    "most Linux takes in one argument: pass data on stdin")
    if sum(len(a.encode(errors="surrogatepass")) for a in argv) > MAX_ARGV_BYTES:
        raise InvalidInputError(f"the arguments are longer than {MAX_ARGV_BYTES >> 10} KiB "
                                "together: pass data on stdin or copy a file in with cp")


Arg = Annotated[str, WithJsonSchema({"type": "string", "pattern": "^[^\\x00]*$"})]


class ExecRequest(Body):
    argv: Annotated[list[Arg], checked(_check_argv)] = Field(
        min_length=1, max_length=4096, examples=[["uname", "-a"]],
        description=f"the command and its arguments; no NUL bytes, at most "
                    f"{MAX_ARGV_BYTES >> 10} KiB together")
    stdin: str | None = Field(
        None, description=f"the command's "
        f"standard input, base64-encoded (any bytes; text as UTF-8), at most "
        f"{MAX_STDIN_BYTES >> 20} MiB decoded")


class VmUpdate(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    restart: RestartPolicy | None = Field(None, description=RESTART_HELP)


class VmResize(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    cpus: int | None = Field(None, description="virtual CPUs, 1-64")
    memory: str | None = Field(None, max_length=32, description="e.g. 512M, 2G")
    disk: str | None = Field(None, max_length=32,
                             description="the disk's new size; it only grows, e.g. 8G")


class SnapshotCreate(Body):
    name: SnapshotName | None = Field(None, description="default: snap1, snap2, ...")
    memory: bool = Field(True, description="save memory and devices too (if the VM runs); "
                                           "false: the disk only")


class ForkCreate(Body):
    source: Source = Field(examples=["web@snap1"], description="VM@SNAPSHOT, a template, or "
                           "a running VM (snapshotted now)")
    name: VmName = Field(description="the new VM's name and hostname")
    ports: list[PortText] = Field([], max_length=64, description="docker-style port forwards")
    network: Literal["nat", "restricted", "none"] | None = Field(
        None, description="default: the source's")
    auto_remove: bool = False


class TemplateCreate(Body):
    name: TemplateName
    source: Source = Field(description="VM@SNAPSHOT, or a running VM")


class FastTemplate(Body):
    image: ImageName = "tiny"
    cpus: int = 1
    memory: str = Field("256M", max_length=32)
    network: Literal["nat", "restricted", "none"] = "nat"


class MigrateRequest(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["host"]}, {"required": ["url", "token"]}]})
    url: str | None = Field(None, max_length=512,
                            description="the destination's API: http(s)://ADDR:PORT")
    token: str | None = Field(None, max_length=512, description="the destination's token")
    host: HostName | None = Field(None, description="instead of url and token: a "
                             "host registered here ('vmkit host add')")
    ca: str | None = Field(None, max_length=4096, description="CA file to trust for its TLS")
    postcopy: bool = Field(False, description="switch to post-copy for guests that dirty "
                                              "memory faster than the link")
    verify: bool | None = Field(None, description="compare the guest's memory on both sides "
                                "before it runs at the destination; default: where the QEMU is "
                                "not trusted to move busy guests whole (before 10.0, under TCG)")
    watch: float | None = Field(None, ge=0, le=600, description="seconds the destination "
                                "watches the moved guest before the source lets go of its "
                                "paused copy; default 30 (VMKIT_MIGRATION_WATCH)")
    ports: list[PortText] | None = Field(None, max_length=64, description="port forwards the VM "
                                    "has at the destination instead of its own, docker-style "
                                    "[ADDR:]HOSTPORT:GUESTPORT[/udp]; default: its own. A "
                                    "destination on this host needs new ones: this VM holds "
                                    "its ports until the switch", examples=[["8081:80"]])


class FinishMigration(Body):
    watch: float = Field(30.0, ge=0, le=600, description="seconds to watch the guest run")


class NetworkCreate(Body):
    name: NetworkName = Field(examples=["lab"])
    subnet: str | None = Field(None, max_length=43, description="e.g. 10.77.0.0/24; default: "
                               "a free /24 in 10.77.0.0/16")
    isolated: bool = Field(False, description="no route out of the host, and the host "
                                              "answers only DHCP and DNS")


class ExportRequest(Body):
    format: Literal["vmkit", "ova", "libvirt"] = Field(
        "vmkit", description="vmkit: disk + spec (+ memory), imported by 'vmkit import'; ova: "
                             "OVF 1.0 + streamOptimized VMDK; libvirt: domain XML + qcow2")
    memory: bool = Field(False, description="include the running VM's memory, so that it "
                                            "resumes where it was on import (vmkit format)")
    directory: str | None = Field(None, max_length=4096, description="libvirt: the absolute "
                                  "path the archive will be unpacked into")


class IncomingMigration(Body):
    spec: dict[str, Any] = Field(description="the VM's spec, as the source has it")
    mac: str = Field(max_length=17, pattern="^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
    disk_bytes: int = Field(gt=0, le=1 << 44)
    disk_used: int = Field(ge=0, le=1 << 44, description="bytes its disk takes at the source")
    qemu: str = Field(max_length=64, description="the source's QEMU version")
    postcopy: bool = Field(False, description="the source may switch to post-copy")

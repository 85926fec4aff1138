"""What a VM is made of, and the checks on every field. Pure functions: no I/O.

A spec is what the user asked for, already validated; ``build_argv`` turns it into QEMU's
command line. Every check raises InvalidInputError with a message that says how to fix it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ..errors import InvalidInputError

NAME_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
NAME_RE = re.compile(NAME_PATTERN)
MIN_MEMORY_MIB, MAX_MEMORY_MIB = 64, 1024 * 1024
MIN_CPUS, MAX_CPUS = 1, 64
MAX_DISK = 16 << 40
_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
# nat: user-mode NAT with outbound access; restricted: the same without any way out (port
# forwards still work); none: no NIC at all.
NETWORKS = ("nat", "restricted", "none")
FIRMWARES = ("bios", "uefi")
# Images vmkit builds itself whose guests run cloud-init (ssh keys, user data, -e).
CLOUD_INIT_BUILDS = ("debian",)
DISPLAYS = ("none", "vnc")  # vnc: a VNC server that vmkitd proxies (vmkit vnc, the dashboard)
# When vmkitd starts a VM again by itself (docker's --restart): no: never; on-failure: after
# its QEMU died without being asked to stop (a crash, a host reboot); always: also after the
# guest shut itself down. A VM stopped with 'vmkit stop' stays stopped whatever its policy.
RESTART_POLICIES = ("no", "on-failure", "always")


def validate_name(name: str, what: str = "VM") -> str:
    if not NAME_RE.fullmatch(name):
        why = " (it becomes the guest's hostname)" if what == "VM" else ""
        shown = f"{name[:24]!r}... ({len(name)} characters)" if len(name) > 80 else repr(name)
        raise InvalidInputError(
            f"invalid {what} name {shown}: use 1-63 letters, digits and '-', starting and "
            f"ending with a letter or digit{why}"
        )
    return name


def parse_size(text: str | int, what: str = "size") -> int:
    """'256M', '1G', '1.5GiB', '512' (MiB when no unit is given, as QEMU's -m) -> bytes."""
    if isinstance(text, int):
        return text << 20
    m = _SIZE_RE.fullmatch(text)
    if not m or len(m.group(1)) > 12:
        raise InvalidInputError(
            f"cannot read {what} {text!r}: give a number with an optional unit, e.g. 512M or 2G"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f}{unit}"
    return f"{n}B"


@dataclass(frozen=True)
class PortForward:
    host_port: int
    guest_port: int
    host_addr: str = "127.0.0.1"
    proto: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        host = f"[{self.host_addr}]" if ":" in self.host_addr else self.host_addr
        return f"{host}:{self.host_port}->{self.guest_port}/{self.proto}"

    def arg(self) -> str:
        """As it is written on the command line (what parse_port reads)."""
        host = f"[{self.host_addr}]" if ":" in self.host_addr else self.host_addr
        return f"{host}:{self.host_port}:{self.guest_port}/{self.proto}"


def _port(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise InvalidInputError(f"invalid port {text!r} in {spec!r}: ports are 1-65535")
    return int(text)


def parse_port(spec: str) -> PortForward:
    """Docker-style '[ADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]'; ADDR defaults to 127.0.0.1."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidInputError(f"invalid protocol {proto!r} in {spec!r}: use /tcp or /udp")
    if body.startswith("["):  # [IPv6]:HOST:GUEST
        addr, _, rest = body[1:].partition("]:")
        parts = [addr, *rest.split(":")]
    else:
        parts = body.rsplit(":", 2)
    if len(parts) == 2:
        parts.insert(0, "127.0.0.1")
    if len(parts) != 3:
        raise InvalidInputError(
            f"invalid port forward {spec!r}: use [ADDR:]HOSTPORT:GUESTPORT, e.g. -p 8080:80"
        )
    addr, host_port, guest_port = parts
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise InvalidInputError(
            f"invalid address {addr!r} in {spec!r}: give an IP address such as 0.0.0.0"
        ) from None
    return PortForward(_port(host_port, spec), _port(guest_port, spec), addr, proto)  # type: ignore[arg-type]


@dataclass(frozen=True)
class VmSpec:
    """A validated request for one VM. Sizes in bytes/MiB so nothing is parsed twice."""

    name: str
    image: str | None = "tiny"  # None: a blank disk, for an OS installed from the CD
    cpus: int = 1
    memory_mib: int = 256
    disk_bytes: int | None = None  # None: the image's own size
    ports: tuple[PortForward, ...] = field(default_factory=tuple)
    network: str = "nat"  # the first NIC: nat, restricted, none or a private network
    auto_remove: bool = False
    disposable: bool = False  # removed with every change when it stops; no NIC by default
    io_iops: int | None = None  # disk operations per second (QEMU block throttling)
    io_bps: int | None = None  # disk bytes per second
    more_networks: tuple[str, ...] = ()  # NICs after the first: private network names or nat
    display: str = "none"  # none or vnc
    cdrom: str | None = None  # an ISO image in the CD drive
    firmware: str = "bios"  # bios (SeaBIOS) or uefi (OVMF); images that vmkit boots directly
    # ignore it
    ssh_keys: str | None = None  # cloud-init: public keys of the user vmkit makes
    user_data: str | None = None  # cloud-init: the user's own cloud-config, as written
    env: dict[str, str] = field(default_factory=dict)  # cloud-init: the guest's environment
    restart: str = "no"  # a RESTART_POLICIES entry; records made before it have none: "no"

    def attachments(self) -> tuple[str, ...]:
        """What each NIC is attached to, in order: nat, restricted or a private network."""
        return () if self.network == "none" else (self.network, *self.more_networks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VmSpec:
        data = dict(data)
        data["ports"] = tuple(PortForward(**p) for p in data.get("ports", ()))
        data["more_networks"] = tuple(data.get("more_networks", ()))
        return cls(**data)


def make_spec(
    name: str,
    image: str | None = "tiny",
    cpus: int = 1,
    memory: str | int = "256M",
    disk: str | None = None,
    ports: list[str] | tuple[str, ...] = (),
    network: str | list[str] | tuple[str, ...] = "nat",
    auto_remove: bool = False,
    host_memory_mib: int | None = None,
    disposable: bool = False,
    io_limit: str | None = None,
    display: str = "none",
    cdrom: str | None = None,
    firmware: str = "bios",
    ssh_keys: str | None = None,
    user_data: str | None = None,
    env: dict[str, str] | list[str] | None = None,
    restart: str = "no",
) -> VmSpec:
    """Validate user input (as typed on the command line or sent to the API) into a VmSpec.
    A disposable VM is removed, with everything it wrote, when it stops."""
    validate_name(name)
    if image is not None:
        validate_name(image, "image")
    elif cdrom is None or disk is None:
        raise InvalidInputError("a VM without an image installs an OS from a CD: give "
                                "--cdrom FILE.iso and --disk SIZE (e.g. --disk 8G)")
    if cdrom is not None:
        validate_name(cdrom, "CD image")
    if firmware not in FIRMWARES:
        raise InvalidInputError(f"invalid firmware {firmware!r}: use bios or uefi")
    if not MIN_CPUS <= cpus <= MAX_CPUS:
        raise InvalidInputError(f"cpus {cpus} is out of range: use {MIN_CPUS}-{MAX_CPUS}")
    memory_mib = check_memory(memory, host_memory_mib)
    disk_bytes = None
    if disk is not None:
        disk_bytes = parse_size(disk, "disk size")
        if not 1 << 20 <= disk_bytes <= MAX_DISK:
            raise InvalidInputError(f"disk {disk} is out of range: use 1M to 16T")
    first, *more = network.split(",") if isinstance(network, str) else network
    for net in (first, *more):
        if net not in NETWORKS:
            validate_name(net, "network")  # a private network's name (vmkit net create)
    if "none" in more or (first == "none" and more):
        raise InvalidInputError("--network none means no NIC at all: do not combine it with "
                                "other networks")
    if len(more) > 7:
        raise InvalidInputError("a VM has at most 8 NICs")
    if sum(n in ("nat", "restricted") for n in (first, *more)) > 1:
        raise InvalidInputError("a VM has at most one user-mode NIC (nat or restricted)")
    network = first
    forwards = tuple(parse_port(p) for p in ports)
    if forwards and not {"nat", "restricted"} & {network, *more}:
        raise InvalidInputError("port forwards need a user-mode NIC (--network nat or "
                                "restricted): drop -p or add one")
    seen = set()
    for f in forwards:
        key = (f.host_addr, f.host_port, f.proto)
        if key in seen:
            raise InvalidInputError(f"host port {f.host_port}/{f.proto} is forwarded twice")
        seen.add(key)
    iops, bps = parse_io_limit(io_limit) if io_limit else (None, None)
    if display not in DISPLAYS:
        raise InvalidInputError(f"invalid display {display!r}: use none or vnc")
    check_restart(restart, auto_remove or disposable)
    from . import cloud  # here: the module is only needed for cloud-init inputs

    keys = cloud.read_ssh_key(ssh_keys, "the ssh key") if ssh_keys else None
    if user_data is not None:
        cloud.read_user_data(user_data, "the user data")
    env = cloud.parse_env(env) if isinstance(env, list) else cloud.parse_env(
        [f"{k}={v}" for k, v in (env or {}).items()])
    return VmSpec(name, image, cpus, memory_mib, disk_bytes, forwards, network,
                  auto_remove or disposable, disposable, iops, bps, tuple(more), display,
                  cdrom, firmware, keys, user_data, env, restart)


def check_restart(policy: str, auto_remove: bool) -> str:
    """``policy`` if it is a restart policy that a VM removed when it stops may have too."""
    if policy not in RESTART_POLICIES:
        raise InvalidInputError(f"invalid restart policy {policy!r}: use no, on-failure or "
                                "always")
    if policy != "no" and auto_remove:
        raise InvalidInputError(f"--restart {policy} keeps a VM coming back, and --rm or "
                                "--disposable removes it when it stops: give one of them")
    return policy


def check_memory(memory: str | int, host_memory_mib: int | None = None) -> int:
    """The memory a VM asks for, in MiB. Each bound has its own message, so that the client's
    check (which does not know the host) and the host's say the same."""
    memory_mib = parse_size(memory, "memory") >> 20
    if memory_mib < MIN_MEMORY_MIB:
        raise InvalidInputError(f"memory {memory} is too little: a VM needs at least "
                                f"{MIN_MEMORY_MIB}M")
    if memory_mib > MAX_MEMORY_MIB:
        raise InvalidInputError(f"memory {memory} is more than vmkit gives a VM "
                                f"({format_size(MAX_MEMORY_MIB << 20)})")
    if host_memory_mib is not None and memory_mib > host_memory_mib:
        raise InvalidInputError(f"memory {memory} is more than this host has "
                                f"({format_size(host_memory_mib << 20)})")
    return memory_mib


def parse_io_limit(text: str) -> tuple[int | None, int | None]:
    """'300iops', '10M' (bytes/s), '300iops,10M' -> (iops, bytes/s)."""
    iops = bps = None
    for item in filter(None, (i.strip().lower() for i in text.split(","))):
        try:
            if item.endswith("iops"):
                iops = int(item.removesuffix("iops"))
            else:
                bps = parse_size(item.removesuffix("/s"), "I/O limit")
        except ValueError:
            iops = -1
        if (iops is not None and not 1 <= iops <= 1_000_000) or \
                (bps is not None and not 4096 <= bps <= 1 << 40):
            raise InvalidInputError(
                f"invalid I/O limit {text!r}: give operations per second and/or bytes per "
                "second, e.g. 300iops, 20M or 300iops,20M")
    if iops is None and bps is None:
        raise InvalidInputError(f"invalid I/O limit {text!r}: e.g. 300iops, 20M or 300iops,20M")
    return iops, bps


def check_spec(data: Any, host_memory_mib: int | None = None) -> VmSpec:
    """A spec that comes from elsewhere (a migrating VM, an export file), checked as strictly
    as one typed by a user."""
    try:
        sent = VmSpec.from_json(data)
    except (TypeError, ValueError, AttributeError) as e:
        raise InvalidInputError(f"invalid VM spec: {e}") from None
    if sent.disk_bytes is not None and not isinstance(sent.disk_bytes, int):
        raise InvalidInputError("invalid VM spec: disk_bytes must be a number of bytes")
    return _remake(sent, sent.cpus, f"{sent.memory_mib}M", None, host_memory_mib)


def resized(spec: VmSpec, cpus: int | None, memory: str | None, disk: str | None,
            host_memory_mib: int | None = None) -> VmSpec:
    """``spec`` with new CPUs, memory and/or disk size, validated as at creation."""
    return _remake(spec, spec.cpus if cpus is None else cpus,
                   memory or f"{spec.memory_mib}M", disk, host_memory_mib)


def with_ports(spec: VmSpec, ports: list[str] | tuple[str, ...]) -> VmSpec:
    """``spec`` with the port forwards ``ports`` instead of its own, checked as at creation."""
    forwards = make_spec(spec.name, ports=ports, network=[spec.network, *spec.more_networks])
    return replace(spec, ports=forwards.ports)


def _remake(spec: VmSpec, cpus: int, memory: str, disk: str | None,
            host_memory_mib: int | None) -> VmSpec:
    new = make_spec(spec.name, spec.image, cpus, memory, disk or (
                        f"{spec.disk_bytes // 1024}K" if spec.disk_bytes else None),
                    [p.arg() for p in spec.ports], [spec.network, *spec.more_networks],
                    spec.auto_remove, host_memory_mib, bool(spec.disposable), _io_text(spec),
                    str(spec.display), spec.cdrom, spec.firmware, spec.ssh_keys,
                    spec.user_data, dict(spec.env), spec.restart)
    return new if disk else replace(new, disk_bytes=spec.disk_bytes)  # to the byte


def _io_text(spec: VmSpec) -> str | None:
    parts = ([f"{spec.io_iops}iops"] if spec.io_iops else []) + (
        [f"{spec.io_bps // 1024}K"] if spec.io_bps else [])
    return ",".join(parts) or None

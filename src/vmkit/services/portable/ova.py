"""OVA: an OVF 1.0 descriptor, a manifest of SHA-1 sums and a streamOptimized VMDK disk,
in one tar file: what VirtualBox and VMware import. Written for export, read for import."""

from __future__ import annotations

import hashlib
import re
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ...errors import InvalidInputError
from ...spec import NAME_RE, VmSpec
from ...formats.tarstream import CHUNK, Member, digest

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
CPU, MEMORY, SCSI, NIC, DISK = 3, 4, 6, 10, 17  # CIM resource types
_UNITS = {"byte": 0, "kilobytes": 10, "megabytes": 20, "gigabytes": 30}


def members(spec: VmSpec, vmdk: Path, capacity: int) -> list[Member]:
    """Descriptor first, then the manifest, then the disk, as the OVF specification orders."""
    disk_name = f"{spec.name}-disk1.vmdk"
    ovf = descriptor(spec, disk_name, vmdk.stat().st_size, capacity).encode()
    mf = (f"SHA1({spec.name}.ovf)= {hashlib.sha1(ovf).hexdigest()}\n"
          f"SHA1({disk_name})= {digest(vmdk, 'sha1')}\n").encode()
    return [Member(f"{spec.name}.ovf", data=ovf), Member(f"{spec.name}.mf", data=mf),
            Member(disk_name, vmdk)]


def _item(**fields: object) -> str:
    # CIM requires the rasd elements in alphabetical order (ovftool checks it).
    body = "".join(f"<rasd:{k}>{escape(str(v))}</rasd:{k}>" for k, v in sorted(fields.items()))
    return f"      <Item>{body}</Item>\n"


def descriptor(spec: VmSpec, disk_name: str, disk_size: int, capacity: int) -> str:
    nic = "" if spec.network == "none" else _item(
        AutomaticAllocation="true", Connection="NAT", ElementName="ethernet0",
        InstanceID=5, ResourceSubType="E1000", ResourceType=NIC)
    network = "" if spec.network == "none" else (
        '  <NetworkSection>\n    <Info>Logical networks used in the package</Info>\n'
        '    <Network ovf:name="NAT"><Description>NAT</Description></Network>\n'
        '  </NetworkSection>\n')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="{OVF}" xmlns:ovf="{OVF}"'
        f' xmlns:rasd="{RASD}" xmlns:vssd="{VSSD}">\n'
        f'  <References>\n    <File ovf:href={quoteattr(disk_name)} ovf:id="file1"'
        f' ovf:size="{disk_size}"/>\n  </References>\n'
        '  <DiskSection>\n    <Info>Virtual disks</Info>\n'
        f'    <Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk1" ovf:fileRef="file1"'
        f' ovf:format="{STREAM_OPTIMIZED}"/>\n  </DiskSection>\n'
        f'{network}'
        f'  <VirtualSystem ovf:id={quoteattr(spec.name)}>\n    <Info>A vmkit VM</Info>\n'
        '    <OperatingSystemSection ovf:id="96">\n      <Info>Guest OS</Info>\n'
        '      <Description>Debian_64</Description>\n    </OperatingSystemSection>\n'
        '    <VirtualHardwareSection>\n      <Info>Virtual hardware</Info>\n'
        '      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName>'
        '<vssd:InstanceID>0</vssd:InstanceID>'
        f'<vssd:VirtualSystemIdentifier>{escape(spec.name)}</vssd:VirtualSystemIdentifier>'
        '<vssd:VirtualSystemType>vmx-07 virtualbox-2.2</vssd:VirtualSystemType></System>\n'
        + _item(Caption=f"{spec.cpus} virtual CPU", ElementName="cpus", InstanceID=1,
                ResourceType=CPU, VirtualQuantity=spec.cpus)
        + _item(AllocationUnits="byte * 2^20", Caption=f"{spec.memory_mib} MB of memory",
                ElementName="memory", InstanceID=2, ResourceType=MEMORY,
                VirtualQuantity=spec.memory_mib)
        + _item(Address=0, ElementName="scsi0", InstanceID=3, ResourceSubType="lsilogic",
                ResourceType=SCSI)
        + _item(AddressOnParent=0, ElementName="disk0", HostResource="ovf:/disk/vmdisk1",
                InstanceID=4, Parent=3, ResourceType=DISK)
        + nic
        + '    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n')


@dataclass(frozen=True)
class Appliance:
    """What vmkit takes from an OVA: the VM's name, CPUs, memory and its one disk."""
    name: str
    cpus: int
    memory_mib: int
    disk: Path


def unpack(archive: Path, into: Path, label: str) -> Appliance:
    """Unpack the OVA's descriptor and disk into ``into``, checked against its manifest."""
    try:
        with tarfile.open(archive, "r:") as tar:
            files = {m.name: m for m in tar.getmembers() if m.isfile()}
            ovf_name = next((n for n in files if n.endswith(".ovf")), None)
            if ovf_name is None:
                raise InvalidInputError(f"{label} is a tar file without an .ovf descriptor: "
                                        "not an OVA")
            ovf = tar.extractfile(files[ovf_name]).read(1 << 20)  # type: ignore[union-attr]
            name, cpus, memory, href, fmt = _read_descriptor(ovf, label)
            if href not in files:
                raise InvalidInputError(f"{label} lacks its disk {href!r}: it is truncated")
            sums = _manifest(tar, files, ovf_name)
            _check(ovf_name, ovf, sums, label)
            disk = into / "disk.vmdk"
            with tar.extractfile(files[href]) as src, open(disk, "wb") as out:  # type: ignore[union-attr]
                while data := src.read(CHUNK):
                    out.write(data)
    except (tarfile.TarError, EOFError) as e:
        raise InvalidInputError(f"{label} is truncated or damaged ({e})") from None
    if "vmdk" not in fmt.lower():
        raise InvalidInputError(f"{label}: its disk {href} is in an unsupported format "
                                f"({fmt or 'not given'}); vmkit imports OVAs with VMDK disks, "
                                "convert it with qemu-img first")
    if href in sums and digest(disk, sums[href][0]) != sums[href][1]:
        raise InvalidInputError(f"{label} is damaged: {href} does not match its checksum")
    return Appliance(name, cpus, memory, disk)


def _read_descriptor(data: bytes, label: str) -> tuple[str, int, int, str, str]:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise InvalidInputError(f"{label}: its OVF descriptor is not valid XML ({e})") from None
    ns = {"ovf": OVF, "rasd": RASD}
    attr = f"{{{OVF}}}"
    system = root.find("ovf:VirtualSystem", ns)
    disks = root.findall("ovf:DiskSection/ovf:Disk", ns)
    if system is None or len(disks) != 1:
        raise InvalidInputError(f"{label}: vmkit imports an OVA with one virtual machine and "
                                f"one disk; this one has {len(disks)} disks")
    refs = {f.get(attr + "id"): f.get(attr + "href", "")
            for f in root.findall("ovf:References/ovf:File", ns)}
    href = refs.get(disks[0].get(attr + "fileRef"), "")
    if not href or "/" in href or href.startswith("."):
        raise InvalidInputError(f"{label}: its disk reference {href!r} is not a file in the OVA")
    cpus, memory = 1, 256
    for item in system.iterfind(".//ovf:Item", ns):
        kind = item.findtext("rasd:ResourceType", "", ns).strip()
        quantity = item.findtext("rasd:VirtualQuantity", "", ns).strip()
        if kind == str(CPU) and quantity.isdigit():
            cpus = int(quantity)
        elif kind == str(MEMORY) and quantity.isdigit():
            memory = int(quantity) << _shift(item.findtext("rasd:AllocationUnits", "", ns)) >> 20
    name = system.get(attr + "id", "")
    name = name if NAME_RE.fullmatch(name) else re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")
    return name[:63] or "imported", cpus, memory, href, disks[0].get(attr + "format", "")


def _shift(units: str) -> int:
    """'byte * 2^20' -> 20, 'MegaBytes' -> 20."""
    units = units.strip().lower()
    if m := re.fullmatch(r"byte\s*\*\s*2\^(\d+)", units):
        return int(m.group(1))
    return _UNITS.get(units, 20)


def _manifest(tar: tarfile.TarFile, files: dict[str, tarfile.TarInfo], ovf_name: str
              ) -> dict[str, tuple[str, str]]:
    """{file: (algorithm, hex digest)} from the OVA's .mf, if it has one."""
    mf = files.get(ovf_name[:-4] + ".mf")
    if mf is None:
        return {}
    sums = {}
    for line in tar.extractfile(mf).read(1 << 20).decode(errors="replace").splitlines():  # type: ignore[union-attr]
        if m := re.fullmatch(r"\s*(SHA1|SHA256)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*", line):
            sums[m.group(2)] = (m.group(1).lower(), m.group(3).lower())
    return sums


def _check(name: str, data: bytes, sums: dict[str, tuple[str, str]], label: str) -> None:
    if name in sums and hashlib.new(sums[name][0], data).hexdigest() != sums[name][1]:
        raise InvalidInputError(f"{label} is damaged: {name} does not match its checksum")

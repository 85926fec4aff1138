"""A libvirt domain for an exported VM: ``virsh define NAME.xml`` and ``virsh start NAME``.

libvirt runs it on a PC machine (libvirt does not drive QEMU's microvm) with the same kernel,
initrd and command line as vmkit, the disk as a standalone qcow2, virtio devices over PCI,
and user-mode networking. Paths in the XML are absolute, as libvirt requires: the export is
written for one directory.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ...spec import VmSpec
from ...formats.tarstream import Member

# vmkit's command line without what only holds for one host (TSC speed) or for microvm.
CMDLINE = "console=ttyS0 root=/dev/vda rw quiet panic=-1 mitigations=off random.trust_cpu=on"


def members(spec: VmSpec, directory: Path, disk: Path, kernel: Path, initrd: Path,
            accel: str) -> list[Member]:
    files = {"disk": f"{spec.name}.qcow2", "kernel": "vmlinux", "initrd": "initrd.cpio"}
    xml = domain_xml(spec, {k: directory / v for k, v in files.items()}, accel)
    return [Member(f"{spec.name}.xml", data=xml.encode()), Member(files["disk"], disk),
            Member(files["kernel"], kernel), Member(files["initrd"], initrd)]


def domain_xml(spec: VmSpec, paths: dict[str, Path], accel: str) -> str:
    def path(key: str) -> str:
        return escape(str(paths[key]))

    nic = "" if spec.network == "none" else (
        "    <interface type='user'><model type='virtio'/></interface>\n")
    cmdline = f"{CMDLINE} vmkit.hostname={spec.name}"
    return (
        f"<domain type={quoteattr('kvm' if accel == 'kvm' else 'qemu')}>\n"
        f"  <name>{escape(spec.name)}</name>\n"
        f"  <memory unit='MiB'>{spec.memory_mib}</memory>\n"
        f"  <vcpu>{spec.cpus}</vcpu>\n"
        "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n"
        f"    <kernel>{path('kernel')}</kernel>\n    <initrd>{path('initrd')}</initrd>\n"
        f"    <cmdline>{escape(cmdline)}</cmdline>\n  </os>\n"
        "  <features><acpi/></features>\n"
        f"  <cpu mode={quoteattr('host-passthrough' if accel == 'kvm' else 'maximum')}/>\n"
        "  <on_reboot>restart</on_reboot>\n"
        "  <devices>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
        f"      <source file='{path('disk')}'/>\n"
        "      <target dev='vda' bus='virtio'/>\n    </disk>\n"
        f"{nic}"
        "    <serial type='pty'><target port='0'/></serial>\n"
        "    <console type='pty'><target type='serial' port='0'/></console>\n"
        "    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
        "</channel>\n"
        "    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\n"
        "    <memballoon model='none'/>\n"
        "  </devices>\n</domain>\n")

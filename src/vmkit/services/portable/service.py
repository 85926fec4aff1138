"""Download a VM to a portable file and import one, on this host (the API calls these).

Download freezes the VM's disk layer the way a snapshot does (with the live state when asked:
the guest pauses only for the save), flattens the layer's chain into one standalone disk in
the format asked for, and hands back the archive as a stream of known length. The VM keeps
running throughout and nothing of it changes but one more frozen layer below its top.

Import receives a file, works out what it is (a vmkit export, an OVA, or a plain disk image),
checks it, and makes a VM of it: a vmkit export comes back as it was exported (running from
its saved state, paused, or stopped), anything else boots. Work happens in a directory of its
own under VMKIT_HOME; a failed import leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core.boot import host_memory_mib
from ...core.core import Core
from ...core.launch import Arrival, Resume, fresh_identity
from ...core.transfers import Download, then_remove
from ...errors import ConflictError, HostError, InvalidInputError, NoSpaceError
from ...formats import bundle, tarstream
from ...formats.tarstream import Member
from ...machine import disks, qemu
from ...machine.identity import Identity, random_mac
from ...spec import VmSpec, check_spec, make_spec, validate_name
from ...state import LIVE, VmState
from ...store import VmRecord
from . import libvirt, ova

S = VmState
FORMATS = ("vmkit", "ova", "libvirt")
# Disk formats an import converts; each must be one self-contained file (checked below).
DISK_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vpc", "vhdx")
EXT4_MAGIC_AT, MBR_MAGIC_AT = 1080, 510
MAC_RE = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")


class Portable:
    def __init__(self, core: Core) -> None:
        self.core = core

    # --- export ------------------------------------------------------------------------

    async def export(self, vm: str, fmt: str = "vmkit", memory: bool = False,
                     directory: str | None = None) -> Download:
        if fmt not in FORMATS:
            raise InvalidInputError(f"unknown export format {fmt!r}: use one of "
                                    f"{', '.join(FORMATS)}")
        if memory and fmt != "vmkit":
            raise InvalidInputError(f"--memory needs the vmkit format: {fmt} files hold disks "
                                    "only")
        if fmt == "libvirt" and not (directory and directory.startswith("/")):
            raise InvalidInputError("a libvirt export names its files by absolute path: give "
                                    "the directory it will be unpacked into")
        work = self.core.transfers.workdir()
        try:
            state = work / bundle.STATE if memory else None
            rec, layer = await self.core.layers.freeze_now(vm, "export", state)
            members = await self._members(rec, fmt, self.core.paths.disk(layer), state, work,
                                          directory)
        except BaseException as e:
            shutil.rmtree(work, ignore_errors=True)
            if isinstance(e, OSError) and e.errno == 28:
                raise NoSpaceError(f"exporting {vm} needs more space in VMKIT_HOME "
                                   f"({self.core.paths.root}); free some and try again") from e
            raise
        ext = {"vmkit": "vmkit", "ova": "ova", "libvirt": "tar"}[fmt]
        return Download(f"{vm}.{ext}", tarstream.length(members), then_remove(
            tarstream.chunks(members), work))

    async def _members(self, rec: VmRecord, fmt: str, frozen: Path, state: Path | None,
                       work: Path, directory: str | None) -> list[Member]:
        core = self.core
        spec: VmSpec = rec.spec
        try:
            if fmt == "ova":
                disk = work / "disk.vmdk"
                await _convert(frozen, disk, "vmdk", "-o", "subformat=streamOptimized")
            else:
                disk = work / bundle.DISK
                await _convert(frozen, disk, "qcow2")
        finally:
            core.layers.unpin(frozen.stem)
        capacity = await asyncio.to_thread(disks.virtual_size, disk)
        boot = core.boot.files(spec)
        facts = core.boot.facts(boot)
        if fmt == "ova":
            return await asyncio.to_thread(ova.members, spec, disk, capacity)
        if fmt == "libvirt":
            if boot.profile != "tiny" or boot.kernel is None or boot.initrd is None:
                raise InvalidInputError("--format libvirt is for VMs of the tiny image; export "
                                        "this one as ova (any hypervisor) or vmkit")
            return libvirt.members(spec, Path(directory or "/"), disk, boot.kernel, boot.initrd,
                                   facts.accel)
        manifest = {
            "created": time.time(),
            "vm": {"spec": spec.to_json(), "mac": rec.mac,
                   "state": "paused" if rec.state == S.PAUSED else
                            "running" if rec.state in LIVE else "stopped"},
            "image": {"name": image.name, "digest": image.digest} if (
                image := core.store.image(spec.image or "")) else None,
            "qemu": (await asyncio.to_thread(qemu.current)).version,
            "disk_bytes": capacity,
        }
        return await asyncio.to_thread(bundle.members, manifest, disk, state)

    # --- import ------------------------------------------------------------------------

    async def receive(self, chunks: AsyncIterator[bytes]) -> Path:
        """Store an uploaded file in a work directory of its own."""
        return await self.core.transfers.receive(chunks)

    async def import_file(self, upload: Path, name: str | None = None, image: str | None = None,
                          ports: list[str] | None = None, filename: str = ""
                          ) -> dict[str, Any]:
        """Make a VM of an uploaded file; the upload's directory is removed in any case.
        ``ports``: port forwards instead of the exported ones (None: keep them)."""
        work = upload.parent
        label = f"'{filename}'" if filename else "the file"
        try:
            if name is not None:
                validate_name(name)
            if image is not None:
                validate_name(image, "image")
            if tarstream.is_tar(upload):
                if await asyncio.to_thread(bundle.manifest_of, upload) is not None:
                    return await self._import_bundle(upload, work, name, ports, label)
                appliance = await asyncio.to_thread(ova.unpack, upload, work, label)
                upload.unlink()
                spec = make_spec(name or appliance.name, image or "tiny", appliance.cpus,
                                 appliance.memory_mib, ports=ports or [])
                return await self._import_disk(appliance.disk, spec, label)
            stem = re.sub(r"[^A-Za-z0-9-]+", "-", Path(filename).stem).strip("-")[:63]
            spec = make_spec(name or stem or "imported", image or "tiny", ports=ports or [])
            return await self._import_disk(upload, spec, label)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _import_bundle(self, upload: Path, work: Path, name: str | None,
                             ports: list[str] | None, label: str) -> dict[str, Any]:
        found = await asyncio.to_thread(bundle.unpack, upload, work, label)
        upload.unlink()  # free its space before the disk moves into place
        manifest = found.manifest
        vm = manifest.get("vm")
        if not isinstance(vm, dict) or vm.get("state") not in ("running", "paused", "stopped") \
                or not MAC_RE.fullmatch(str(vm.get("mac"))):
            raise InvalidInputError(f"{label} has an invalid manifest: export it again")
        spec = check_spec(vm.get("spec"), host_memory_mib())
        if ports is not None:
            forwards = make_spec(spec.name, ports=ports, network=spec.network).ports
            spec = replace(spec, ports=forwards)
        state, mac = vm["state"], vm["mac"]
        renamed = name is not None and name != spec.name
        spec = replace(spec, name=name or spec.name, auto_remove=False, disposable=False)
        resume = None
        if found.state is not None:
            ours = await asyncio.to_thread(qemu.current)
            theirs = str(manifest.get("qemu", "unknown"))
            if not ours.loads_states_of(theirs):
                raise ConflictError(f"{label} holds a running VM saved by QEMU {theirs}; this "
                                    f"host has QEMU {ours.version}, which cannot load it; "
                                    "export it again without --memory")
            if renamed:  # a copy beside the original: it needs its own identity
                mac = random_mac()
            identity = fresh_identity(spec, mac) if renamed else Identity()
            resume = Resume(found.state, None, state == "paused", identity)
        elif renamed:
            mac = random_mac()
        return await self._create(spec, mac, found.disk, label,
                                  start=resume is not None or state != "stopped",
                                  resume=resume)

    async def _import_disk(self, disk: Path, spec: VmSpec, label: str) -> dict[str, Any]:
        """A plain disk image (or an OVA's disk): converted to qcow2 and booted."""
        info = await _disk_info(disk, label)
        fmt = info["format"]
        if fmt not in DISK_FORMATS:
            raise InvalidInputError(f"{label} is a {fmt} disk image, which vmkit does not "
                                    f"import; use one of: {', '.join(DISK_FORMATS)}")
        converted = disk.with_name("converted.qcow2")
        await _convert(disk, converted, "qcow2", "-f", fmt)
        disk.unlink()
        spec = replace(spec, disk_bytes=info["virtual-size"])
        return await self._create(spec, random_mac(), converted, label, start=True)

    async def _create(self, spec: VmSpec, mac: str, disk: Path, label: str, *, start: bool,
                      resume: Resume | None = None) -> dict[str, Any]:
        info = await _disk_info(disk, label)
        if info["format"] != "qcow2":
            raise InvalidInputError(f"{label} is damaged: its disk is not a qcow2 image")
        await asyncio.to_thread(_check_root_disk, disk, label)

        async def move_in(path: Path) -> None:
            os.rename(disk, path)

        await self.core.launcher.register(spec, Arrival(
            move_in, mac, resume=resume, start=start,
            conflict=f"a VM named {spec.name} already exists here; import it under another "
                     "name with --name"))
        return self.core.get_vm(spec.name)


async def _convert(src: Path, dest: Path, fmt: str, *opts: str) -> None:
    """qemu-img convert, the whole backing chain flattened. -U: the chain's lower layers are
    open in the running VM (read-only, and frozen: they never change)."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "convert", "-U", *opts, "-O", fmt, str(src), str(dest),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        if "No space" in text:
            raise OSError(28, text)
        raise HostError(f"qemu-img could not convert the disk: {text}")


async def _disk_info(path: Path, label: str) -> dict[str, Any]:
    """qemu-img's view of an untrusted disk image, refused unless it is one file alone: a
    backing file, external data file or VMDK extent could point at any file on this host."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "info", "--output=json", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise InvalidInputError(f"{label} is not a disk image qemu-img can read: "
                                f"{err.decode(errors='replace').strip()}")
    info = json.loads(out)
    data = (info.get("format-specific") or {}).get("data") or {}
    extents = [e.get("filename") for e in data.get("extents", [])]
    if (info.get("backing-filename") or data.get("data-file")
            or any(e != str(path) for e in extents)):
        raise InvalidInputError(f"{label} refers to other files (a backing file or external "
                                "data); flatten it first: qemu-img convert -O qcow2 IN OUT")
    return dict(info)


def _check_root_disk(disk: Path, label: str) -> None:
    """vmkit boots a disk with its image's kernel, the disk being the root filesystem: a disk
    with a partition table and a boot loader of its own cannot boot that way yet."""
    head = disks.read_head(disk, 2048)
    if head[EXT4_MAGIC_AT:EXT4_MAGIC_AT + 2] == b"\x53\xef":
        return
    if head[MBR_MAGIC_AT:MBR_MAGIC_AT + 2] == b"\x55\xaa":
        raise InvalidInputError(f"{label} holds a partitioned disk with its own boot loader; "
                                "vmkit boots disks whose whole device is an ext4 root "
                                "filesystem (as vmkit exports them)")
    raise InvalidInputError(f"{label} is not a vmkit export, an OVA or a disk with an ext4 "
                            "root filesystem")



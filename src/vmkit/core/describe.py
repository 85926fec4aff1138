"""The public view of VMs, images and operations, as the API sends them and the SDK reads
them (vmkit.models): plain values made from store records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..spec import format_size
from ..store import ImageRecord, Operation, Store, VmRecord


def snapshot_label(store: Store, snap_id: str | None) -> str | None:
    """How users name a snapshot: VM@SNAP, or the template that keeps it."""
    if snap_id is None or (snap := store.snapshot(snap_id)) is None:
        return None
    if snap.vm is not None:
        return f"{snap.vm}@{snap.name}"
    names = [t.name for t in store.templates() if t.snapshot == snap_id]
    return names[0] if names else snap.name


def describe_vm(rec: VmRecord, store: Store | None = None) -> dict[str, Any]:
    """A VM as the API and CLI show it; with ``store``, the snapshots it stands on are named."""
    spec = rec.spec
    return {
        "name": spec.name, "state": rec.state.value, "image": spec.image, "cpus": spec.cpus,
        "memory": format_size(spec.memory_mib << 20), "memory_mib": spec.memory_mib,
        "disk": format_size(spec.disk_bytes) if spec.disk_bytes else None,
        "network": spec.network, "networks": list(spec.attachments()), "mac": rec.mac,
        "pid": rec.pid,
        "ports": [{"host_addr": p.host_addr, "host_port": p.host_port,
                   "guest_port": p.guest_port, "proto": p.proto} for p in spec.ports],
        "auto_remove": spec.auto_remove, "disposable": spec.disposable,
        "io_iops": spec.io_iops, "io_bps": spec.io_bps, "created": rec.created,
        "started": rec.started, "display": spec.display,
        "reason": rec.reason, "cdrom": spec.cdrom, "firmware": spec.firmware,
        "ssh_keys": spec.ssh_keys, "restart": spec.restart,
        **({"snapshot": snapshot_label(store, rec.head),
            "forked_from": snapshot_label(store, rec.base)} if store is not None else {}),
    }


def _source_name(source: Any) -> str:
    """The imported file's name (images imported by vmkit 0.1 kept the name alone)."""
    return Path(source["path"]).name if isinstance(source, dict) else str(source)


def describe_image(image: ImageRecord) -> dict[str, Any]:
    meta = image.meta
    return {"name": image.name, "digest": image.digest, "kind": image.kind,
            "size": image.size, "disk": format_size(int(meta["rootfs_bytes"])),
            "created": image.created, "format": meta.get("format", "raw"),
            "description": meta.get("description") or (
                f"imported from {_source_name(meta['source'])}" if "source" in meta
                else "vmkit tiny guest"),
            "bootable": meta.get("bootable"), "cloud_init": bool(meta.get("cloud_init")),
            "source": meta["source"] if isinstance(meta.get("source"), dict) else None}


def describe_operation(op: Operation) -> dict[str, Any]:
    return dict(op.__dict__)

"""Boot media: what a VM boots (its image's kernel or disk, its CD, its cloud-init seed and
UEFI variables) and what this host's QEMU runs with (KVM or TCG, probed once)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from ..images import seed
from ..images.store import ImageStore
from ..machine.accel import probe_host
from ..machine.argv import OVMF_VARS, BootFiles, HostFacts
from ..paths import HomePaths
from ..errors import InvalidInputError
from ..spec import VmSpec, cloud, format_size
from ..store import Store


def host_memory_mib() -> int:
    """This host's memory, in MiB."""
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


def check_disk_fits(spec: VmSpec, boot: BootFiles) -> None:
    """A VM's disk holds at least its image."""
    if spec.disk_bytes is not None and spec.disk_bytes < boot.rootfs_bytes:
        raise InvalidInputError(
            f"disk {format_size(spec.disk_bytes)} is smaller than the image "
            f"{spec.image} ({format_size(boot.rootfs_bytes)}); use at least that")


class BootMedia:
    def __init__(self, paths: HomePaths, store: Store, images: ImageStore) -> None:
        self.paths = paths
        self.store = store
        self.images = images
        self._facts: tuple[HostFacts, str] | None = None

    def facts(self, boot: BootFiles | None = None) -> HostFacts:
        """What this host's QEMU runs with. The KVM probe boots a real kernel: ``boot``'s,
        else any image's (tiny's first), else the host's own (accel.py)."""
        if self._facts is None:
            if boot is None or boot.kernel is None:
                names = ("tiny", *(i.name for i in self.store.images()))
                boot = next((b for b in map(self._kernel_boot, names) if b is not None), None)
            self._facts = probe_host(boot, self.paths.run / "host.json")
        return self._facts[0]

    def _kernel_boot(self, name: str) -> BootFiles | None:
        """How image ``name`` boots, if it has a kernel of its own."""
        image = self.store.image(name)
        if image is None or image.kind not in ("tiny", "debian"):
            return None
        return self.images.boot_files(image)

    def files(self, spec: VmSpec, vm_dir: Path | None = None) -> BootFiles:
        """What the VM of ``spec`` boots: its image's files, its CD, and in ``vm_dir`` (its
        own directory by default) its cloud-init seed and UEFI variables, which
        ``write`` makes."""
        vm_dir = vm_dir or self.paths.vm(spec.name).dir
        if spec.image is None:  # a blank disk for an OS to be installed from the CD
            boot = BootFiles(None, None, None, spec.disk_bytes or 0, profile="pc", agent=False)
            cloud_init = False
        else:
            image = self.images.get(spec.image)
            boot = self.images.boot_files(image)
            cloud_init = bool(image.meta.get("cloud_init"))
        return replace(
            boot, cdrom=self.images.cdrom(spec.cdrom) if spec.cdrom else None,
            seed=vm_dir / "seed.iso" if cloud_init else None,
            # Firmware only matters where no kernel is booted directly.
            firmware=spec.firmware if boot.kernel is None else "bios",
            efi_vars=vm_dir / "efi-vars.fd" if boot.kernel is None and
            spec.firmware == "uefi" else None)

    @staticmethod
    def write(spec: VmSpec, boot: BootFiles) -> None:
        """Make the VM's cloud-init seed and UEFI variable store, where it has none yet."""
        if boot.efi_vars is not None and not boot.efi_vars.exists():
            shutil.copyfile(OVMF_VARS, boot.efi_vars)
        if boot.seed is not None and not boot.seed.exists():
            user_data = cloud.read_user_data(spec.user_data, "user data") if spec.user_data \
                else None
            config = seed.cloud_config(spec.name, spec.ssh_keys, user_data, dict(spec.env))
            # The instance id follows the VM, so a copy of the seed made elsewhere (after a
            # migration) does not make cloud-init provision the guest again at its next boot;
            # a fork has a new name, hence a new instance, as a clone should.
            seed.build_seed(boot.seed, f"vmkit-{spec.name}", spec.name, config)

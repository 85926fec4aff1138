"""What a new VM is asked to be, as a user gives it (``POST /v1/vms``, ``vmkit run``), and
the one rule for the network a VM gets when none is named."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..spec import VmSpec, make_spec


def default_network(disposable: bool) -> str:
    """A VM's network when none is named: none for a disposable VM, nat for any other."""
    return "none" if disposable else "nat"


@dataclass(frozen=True)
class VmRequest:
    """A new VM's fields, not yet checked (``spec`` checks them); the defaults are the API's."""
    name: str
    image: str | None = "tiny"  # None: a blank disk, which needs ``cdrom`` and ``disk``
    cpus: int = 1
    memory: str = "256M"
    disk: str | None = None
    ports: list[str] = field(default_factory=list)
    network: str | list[str] | None = None  # None: default_network; empty: no NIC at all
    auto_remove: bool = False
    disposable: bool = False
    io_limit: str | None = None
    display: str = "none"
    cdrom: str | None = None
    firmware: str = "bios"
    ssh_keys: str | None = None
    user_data: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    restart: str = "no"  # no, on-failure or always (spec.RESTART_POLICIES)

    def networks(self) -> str | list[str]:
        """What the VM's NICs attach to."""
        if self.network is None:
            return default_network(self.disposable)
        return self.network or "none"  # an empty list asks for no NIC: never a default that widens

    def spec(self, host_memory_mib: int | None = None) -> VmSpec:
        """The VM asked for, checked as the CLI's are; with ``host_memory_mib``, refused if
        it wants more memory than that."""
        return make_spec(
            self.name, image=self.image, cpus=self.cpus, memory=self.memory, disk=self.disk,
            ports=self.ports, network=self.networks(), auto_remove=self.auto_remove,
            host_memory_mib=host_memory_mib, disposable=self.disposable,
            io_limit=self.io_limit, display=self.display, cdrom=self.cdrom,
            firmware=self.firmware, ssh_keys=self.ssh_keys, user_data=self.user_data,
            env=self.env, restart=self.restart)

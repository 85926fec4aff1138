"""The SDK's calls about the cluster a vmkitd is a member of (``vmkitd --cluster``). To drive
the whole cluster as one host (every VM, wherever it lives), use ``Client.for_cluster``
(routing.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .answers import Answer
from .connection import Connection, seg

if TYPE_CHECKING:
    from ..models import ClusterHost, ClusterVm, Placement

CLUSTER_HOSTS: Answer[list[ClusterHost]] = Answer("ClusterHost", many=True)
CLUSTER_VMS: Answer[list[ClusterVm]] = Answer("ClusterVm", many=True)
PLACEMENT: Answer[Placement] = Answer("Placement")


class ClusterCalls(Connection):
    """Mixed into :class:`vmkit.Client`."""

    def cluster_hosts(self) -> list[ClusterHost]:
        """Every host of the cluster this vmkitd belongs to, with its state (ready,
        cordoned, draining, down), capacity and use::

            for h in Client(url=..., token=...).cluster_hosts():
                print(h.name, h.state, h.memory_used_mib, h.memory_mib)
        """
        return self._call("GET", "/cluster/hosts", CLUSTER_HOSTS)

    def cluster_vms(self) -> list[ClusterVm]:
        """Every VM on every host of the cluster that is up, each with its ``host``."""
        return self._call("GET", "/cluster/vms", CLUSTER_VMS)

    def where(self, name: str) -> Placement:
        """The host VM ``name`` lives on (``host``, its API ``url``) and why it was placed
        there (``why``)."""
        return self._call("GET", f"/cluster/vms/{seg(name)}", PLACEMENT)

    def place(self, name: str | None = None, image: str | None = "tiny", cpus: int = 1,
              memory: str = "256M", **rules: Any) -> Placement:
        """Choose a host for a new VM and reserve its CPUs and memory there; ``rules``:
        ``group``, ``policy`` ("spread" or "pack"), ``host`` (pin). Then make the VM on
        the placement's ``url`` (``Client.for_cluster(...).run`` does both)."""
        body = {"name": name, "image": image, "cpus": cpus, "memory": memory, **rules}
        return self._call("POST", "/cluster/placements", PLACEMENT, json=body)

    def unplace(self, name: str, host: str) -> None:
        """Give back the placement of a VM that was not made."""
        self._do("DELETE", f"/cluster/placements/{seg(name)}", params={"host": host})

    def mark_host(self, name: str, state: str) -> None:
        """Cordon a host ("cordoned": it takes no new VMs), mark it "draining", or make it
        "ready" again."""
        self._do("PUT", f"/cluster/hosts/{seg(name, 'host')}/state", json={"state": state})

    def send_vm(self, name: str, host: str) -> None:
        """(On the VM's host) move stopped VM ``name`` cold to member ``host``, placed there
        first: its disk and spec arrive, it stays stopped."""
        self._do("POST", f"/cluster/vms/{seg(name)}/send", json={"host": host})

    def moved(self, name: str, host: str) -> None:
        """Record that VM ``name`` now lives on ``host`` (after migrating it there)."""
        self._do("PUT", f"/cluster/vms/{seg(name)}/host", json={"host": host})

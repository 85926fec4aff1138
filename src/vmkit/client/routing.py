"""The whole cluster as one host: ``ClusterClient.for_host("h1")`` talks to member h1 (any
member will do) and sends each VM's own calls to the host the VM lives on, found in the
cluster's index (``where``); ``list_vms`` lists every VM on every host and ``run`` lets the
scheduler choose the host (``placement`` then says which and why)::

    from vmkit.client.routing import ClusterClient
    with ClusterClient.for_host("h1") as c:
        vm = c.run(memory="256M", group="web", policy="spread")
        print(c.placement.host, c.exec(vm.name, ["uname", "-n"]).stdout)
"""

from __future__ import annotations

import re
import urllib.parse
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import InvalidStateError, NotFoundError, VmkitError
from .client import Client

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from httpx_ws import WebSocketSession

    from ..models import ClusterVm, Operation, Placement
    from .terminal import TerminalSession

VM_PATH = re.compile(r"^/vms/([^/?]+)(?:/|$)")


class ClusterClient(Client):
    """A :class:`vmkit.Client` of a whole cluster, through one member."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 home: Path | None = None, autostart: bool = False, timeout: float = 30.0,
                 ca: str | None = None, plain: bool = False) -> None:
        super().__init__(url, token, home, False, timeout, ca, plain)
        self._token, self._ca, self._timeout = token, ca, timeout
        self._hosts: dict[str, Client] = {}  # by URL
        self._owners: dict[str, Client] = {}  # by VM name
        self._last: Client | None = None  # the host the last VM call went to
        self.placement: Placement | None = None  # where the last run went, and why
        self._run: str | None = None  # the operation of the last run placed

    def close(self) -> None:
        for host in self._hosts.values():
            host.close()
        super().close()

    # --- routing -------------------------------------------------------------------------

    def owner(self, name: str) -> Client:
        """A client of the host VM ``name`` lives on."""
        if name not in self._owners:
            try:
                self._owners[name] = self._host(self.where(name).url)
            except NotFoundError:
                if self._last is None:  # made moments ago: the index has it in seconds
                    raise
                return self._last
        self._last = self._owners[name]
        return self._last

    def _host(self, url: str) -> Client:
        if url not in self._hosts:
            self._hosts[url] = Client(url=url, token=self._token, ca=self._ca,
                                      timeout=self._timeout, plain=self.plain)
        return self._hosts[url]

    def _send(self, method: str, path: str, stream: bool = False, **kw: Any) -> httpx.Response:
        if match := VM_PATH.match(path):
            target = self.owner(urllib.parse.unquote(match[1]))
        elif path.startswith("/operations/") and self._last is not None:
            target = self._last  # an operation of the host the last VM call went to
        else:
            return super()._send(method, path, stream, **kw)
        return target._send(method, path, stream, **kw)

    # --- calls that are the cluster's ------------------------------------------------

    def list_vms(self) -> list[ClusterVm]:  # type: ignore[override]
        """Every VM on every host that is up, each with its ``host``."""
        return self.cluster_vms()

    def start_run(self, image: str | None = None, name: str | None = None, *,
                  group: str | None = None, policy: str | None = None,
                  host: str | None = None, **options: Any) -> Operation:
        """Place the VM (``group`` with ``policy`` "spread" or "pack"; ``host`` pins), then
        start it there; see :meth:`vmkit.Client.start_run`. The placement, if the run
        cannot start, is given back."""
        rules = {k: v for k, v in (("group", group), ("policy", policy), ("host", host)) if v}
        placed = self.place(name, image or (None if options.get("cdrom") else "tiny"),
                            options.get("cpus", 1), options.get("memory", "256M"), **rules)
        there = self._host(placed.url)
        try:
            op = there.start_run(image, placed.name, **options)
        except BaseException:
            self.unplace(placed.name, placed.host)
            raise
        self.placement, self._owners[placed.name], self._last = placed, there, there
        self._run = op.id
        return op

    def wait_operation(self, op_id: str, on_progress: Callable[[Operation], None] | None = None,
                       interval: float = 0.25) -> Operation:
        try:
            return super().wait_operation(op_id, on_progress, interval)
        except VmkitError:
            if op_id == self._run and self.placement is not None:
                self._give_back(self.placement)
            raise

    def _give_back(self, placed: Placement) -> None:
        """The run placed here failed: give its reservation back once its host removed
        what it made (if the VM stays, its host keeps the entry and drops it with the VM)."""
        try:
            self._host(placed.url).get_vm(placed.name)
        except NotFoundError:
            self.unplace(placed.name, placed.host)

    def console(self, name: str) -> AbstractContextManager[WebSocketSession]:
        return self.owner(name).console(name)

    @contextmanager
    def terminal(self, name: str, argv: list[str] | None = None, rows: int = 24,
                 cols: int = 80, term: str = "xterm") -> Iterator[TerminalSession]:
        with self.owner(name).terminal(name, argv, rows, cols, term) as session:
            yield session

    # --- drain ---------------------------------------------------------------------------

    def drain(self, host: str, say: Callable[[str], None] = lambda line: None,
              watch: float = 5.0) -> list[str]:
        """Mark ``host`` draining and move each of its VMs to a host the scheduler picks
        (keeping its group's rule): running ones live (migration), stopped ones cold (their
        export imported there, still stopped). ``say`` hears how it goes; returns the VMs
        left on it, each with why. A VM that cannot move stays, as it was, where it is."""
        hosts = {h.name: h for h in self.cluster_hosts()}
        if host not in hosts:
            raise NotFoundError(f"no host named {host} in the cluster ('vmkit cluster hosts' "
                                "lists them)")
        if not any(h.state == "ready" for name, h in hosts.items() if name != host):
            raise InvalidStateError(f"{host} is the last ready host of the cluster: there is "
                                    "nowhere to drain it to")
        self.mark_host(host, "draining")
        source = self._host(hosts[host].url)
        left: list[str] = []
        for vm in [vm for vm in self.cluster_vms() if vm.host == host]:
            try:
                self._move(vm, host, source, say, watch)
            except VmkitError as e:
                left.append(f"{vm.name}: {e.message}")
                say(f"{vm.name}: stays on {host}: {e.message}")
        return left

    def _move(self, vm: ClusterVm, host: str, source: Client, say: Callable[[str], None],
              watch: float) -> None:
        cold = vm.state in ("stopped", "crashed")
        if not cold and vm.state != "running":
            raise InvalidStateError(f"it is {vm.state}; running VMs move live and stopped "
                                    "ones cold: resume or stop it first")
        version = None if cold else next(h.qemu_version for h in self.cluster_hosts()
                                         if h.name == host)
        placed = self.place(vm.name, vm.image, vm.cpus, vm.memory, away_from=host,
                            qemu=version)
        say(f"{vm.name}: {host} -> {placed.host}" + (f" (cold: it is {vm.state})" if cold
                                                      else ""))
        try:
            if cold:  # its export (disk and spec) is imported there, stopped
                source.send_vm(vm.name, placed.host)
            else:
                op = source.migrate(vm.name, placed.url, self._token or "", self._ca,
                                    watch=watch)
                source.wait_operation(op.id, lambda o: say(
                    f"{vm.name}: {int(o.progress * 100)}% {o.message or ''}".rstrip()))
        except BaseException:
            self.moved(vm.name, host)
            raise
        self._owners.pop(vm.name, None)
        say(f"{vm.name}: now on {placed.host}")

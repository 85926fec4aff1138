"""A whole cluster on one machine (``vmkit cluster up`` / ``down``, and the tests): one network
namespace per host, joined by veth pairs to a bridge, each with an etcd member and a vmkitd
(its own VMKIT_HOME, ``--listen`` on its namespace's address, the cluster's token).

Everything it makes is named after the cluster (``vk<NAME>``) and written down in
``DIR/cluster.json`` before it is made, so ``down`` removes every trace: processes (the
VMs' QEMUs too: whatever runs in the namespaces), namespaces, the bridge, its firewall rule
and the directory. Needs root (network namespaces). Imports nothing of the server side: the
CLI runs it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ..errors import ConflictError, HostError, InvalidInputError, NotFoundError
from ..paths import atomic_write

API_PORT, CLIENT_PORT, PEER_PORT = 8765, 2379, 2380
STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class Layout:
    """What a demo cluster is made of; every name derives from ``name``."""

    name: str  # 1-8 letters and digits: interface names have 15 characters at most
    hosts: int
    subnet: str  # an IPv4 /24, e.g. 10.77.0.0/24: the bridge is .1, host i is .(10 + i)
    dir: str
    memory_mib: int | None = None  # what each host offers the cluster's VMs (None: all)

    @property
    def bridge(self) -> str:
        return f"vk{self.name}br"

    def netns(self, i: int) -> str:
        return f"vk{self.name}-h{i}"

    def veth(self, i: int) -> str:
        return f"vk{self.name}h{i}"

    def host(self, i: int) -> str:
        return f"h{i}"

    def address(self, i: int) -> str:
        """Host ``i``'s address; 0 is the bridge's (this machine's side)."""
        net = ipaddress.ip_network(self.subnet)
        return str(net.network_address + (1 if i == 0 else 10 + i))

    def etcd_urls(self) -> list[str]:
        return [f"http://{self.address(i)}:{CLIENT_PORT}" for i in self.numbers()]

    def api_url(self, i: int) -> str:
        return f"http://{self.address(i)}:{API_PORT}"

    def home(self, i: int) -> Path:
        return Path(self.dir) / self.host(i)

    def numbers(self) -> range:
        return range(1, self.hosts + 1)


def layout(name: str, hosts: int, subnet: str, base: Path, memory_mib: int | None = None
           ) -> Layout:
    """A validated Layout under ``base``/``name``."""
    if not (name.isascii() and name.isalnum() and 1 <= len(name) <= 8):
        raise InvalidInputError(f"cluster name {name!r}: 1-8 letters and digits")
    if not 1 <= hosts <= 9:
        raise InvalidInputError(f"--hosts {hosts}: a demo cluster has 1 to 9 hosts")
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError:
        net = None
    if net is None or net.version != 4 or net.prefixlen != 24:
        raise InvalidInputError(f"--subnet {subnet!r}: give an IPv4 /24, e.g. 10.77.0.0/24")
    return Layout(name, hosts, str(net), str(base / name), memory_mib)


def load(base: Path, name: str) -> Layout:
    try:
        data = json.loads((base / name / STATE_FILE).read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no demo cluster named {name!r} is up ('vmkit cluster up' "
                            "makes one)") from None
    return Layout(**data)


def up(lay: Layout, seed: Callable[[Path], None] | None = None) -> None:
    """Make the cluster; on any failure, remove what was made and raise. ``seed(home)``
    fills the first host's home before its vmkitd starts (the tests give it images)."""
    if os.geteuid() != 0:
        raise HostError("a demo cluster needs root: it makes network namespaces")
    if shutil.which("etcd") is None:
        raise HostError("etcd is not installed: apt-get install etcd-server etcd-client")
    if Path(lay.dir, STATE_FILE).exists() or _exists(["ip", "link", "show", lay.bridge]):
        raise ConflictError(f"a demo cluster named {lay.name!r} is up: "
                            f"'vmkit cluster down --name {lay.name}' first")
    Path(lay.dir).mkdir(parents=True, mode=0o700)
    atomic_write(Path(lay.dir, STATE_FILE), json.dumps(asdict(lay)).encode())
    try:
        _network(lay)
        if seed is not None:
            seed(lay.home(1))
        for i in lay.numbers():
            _spawn(lay, i, "etcd", _etcd_argv(lay, i))
        for i in lay.numbers():
            _spawn(lay, i, "vmkitd", _vmkitd_argv(lay, i))
        wait_ready(lay)
    except BaseException:
        down(lay)
        raise


def down(lay: Layout) -> None:
    """Remove every trace of the cluster; what is already gone is skipped."""
    # The vmkitds first, while etcd still answers their leaving; then all that is left
    # in the namespaces (etcd, the VMs' QEMUs).
    inside = {i: _namespace_pids(lay.netns(i)) for i in lay.numbers()}
    _stop([p for i, pids in inside.items() for p in pids if _pid_file(lay, i, "vmkitd") == p])
    _stop([p for i in lay.numbers() for p in _namespace_pids(lay.netns(i))])
    for i in lay.numbers():
        _run(["ip", "netns", "delete", lay.netns(i)], check=False)
        # A mount namespace made meanwhile (a jailed QEMU's) can hold the namespace, and
        # its veth with it: delete our end, which takes the pair.
        _run(["ip", "link", "delete", lay.veth(i)], check=False)
    _run(["ip", "link", "delete", lay.bridge], check=False)
    _run(["iptables", *_forward_rule(lay, "-D")], check=False)
    shutil.rmtree(lay.dir, ignore_errors=True)


def wait_ready(lay: Layout, timeout: float = 60.0) -> None:
    """Wait until every vmkitd answers on its API (so it has joined the cluster)."""
    deadline = time.monotonic() + timeout
    for i in lay.numbers():
        while not _answers(lay.api_url(i) + "/v1/info"):
            log = lay.home(i) / "vmkitd.log"
            if not _alive(lay, i, "vmkitd") or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines() if log.exists() \
                    else []
                raise HostError(f"vmkitd of {lay.host(i)} did not start: "
                                f"{tail[-1] if tail else 'no output'}")
            time.sleep(0.2)


def token(lay: Layout) -> str:
    """The cluster's API token, as the first host keeps it."""
    return (lay.home(1) / "run" / "token").read_text().strip()


def pid(lay: Layout, i: int, what: str) -> int:
    """The pid of host ``i``'s ``what`` ("etcd" or "vmkitd")."""
    return int((lay.home(i) / f"{what}.pid").read_text())


def spawn(lay: Layout, i: int, what: str) -> None:
    """Start host ``i``'s etcd or vmkitd again (after a test stopped it)."""
    _spawn(lay, i, what, _etcd_argv(lay, i) if what == "etcd" else _vmkitd_argv(lay, i))


# --- the pieces ----------------------------------------------------------------------------

def _network(lay: Layout) -> None:
    _run(["ip", "link", "add", lay.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"{lay.address(0)}/24", "dev", lay.bridge])
    _run(["ip", "link", "set", lay.bridge, "up"])
    # Bridged frames pass through iptables when br_netfilter is loaded: let ours through.
    _run(["iptables", *_forward_rule(lay, "-I")])
    for i in lay.numbers():
        ns, veth = lay.netns(i), lay.veth(i)
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _run(["ip", "link", "set", veth, "master", lay.bridge, "up"])
        inside = ["ip", "netns", "exec", ns, "ip"]
        _run([*inside, "addr", "add", f"{lay.address(i)}/24", "dev", "eth0"])
        _run([*inside, "link", "set", "eth0", "up"])
        _run([*inside, "link", "set", "lo", "up"])


def _forward_rule(lay: Layout, action: str) -> list[str]:
    return ["-w", action, "FORWARD", "-i", lay.bridge, "-o", lay.bridge, "-m", "comment",
            "--comment", f"vmkit:cluster:{lay.name}", "-j", "ACCEPT"]


def _etcd_argv(lay: Layout, i: int) -> list[str]:
    addr = lay.address(i)
    peers = ",".join(f"{lay.host(j)}=http://{lay.address(j)}:{PEER_PORT}" for j in lay.numbers())
    return ["etcd", "--name", lay.host(i), "--data-dir", str(lay.home(i) / "etcd"),
            "--listen-client-urls", f"http://{addr}:{CLIENT_PORT}",
            "--advertise-client-urls", f"http://{addr}:{CLIENT_PORT}",
            "--listen-peer-urls", f"http://{addr}:{PEER_PORT}",
            "--initial-advertise-peer-urls", f"http://{addr}:{PEER_PORT}",
            "--initial-cluster", peers, "--initial-cluster-token", f"vmkit-{lay.name}",
            "--initial-cluster-state", "new"]


def _vmkitd_argv(lay: Layout, i: int) -> list[str]:
    return [sys.executable, "-m", "vmkit.daemon", "--home", str(lay.home(i)),
            "--listen", f"{lay.address(i)}:{API_PORT}", "--cluster", ",".join(lay.etcd_urls()),
            "--host-name", lay.host(i),
            *(["--cluster-memory", str(lay.memory_mib)] if lay.memory_mib else [])]


def _spawn(lay: Layout, i: int, what: str, argv: list[str]) -> None:
    home = lay.home(i)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, "VMKIT_HOME": str(home)}
    with open(home / f"{what}.log", "ab") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", lay.netns(i), *argv], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    atomic_write(home / f"{what}.pid", f"{proc.pid}\n".encode())


def _stop(pids: list[int]) -> None:
    """End processes ``pids``: TERM, then KILL those left after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        pids = [p for p in pids if _exists_pid(p)]
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _exists_pid(p)]
            time.sleep(0.1)
        if not pids:
            return


def _namespace_pids(ns: str) -> list[int]:
    result = _run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _exists_pid(p: int) -> bool:
    try:
        stat = Path(f"/proc/{p}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has ended
    except (FileNotFoundError, ProcessLookupError):
        return False


def _pid_file(lay: Layout, i: int, what: str) -> int | None:
    try:
        return pid(lay, i, what)
    except (FileNotFoundError, ValueError):
        return None


def _alive(lay: Layout, i: int, what: str) -> bool:
    found = _pid_file(lay, i, what)
    return found is not None and _exists_pid(found)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code in (200, 401)
    except httpx.TransportError:
        return False


def _exists(argv: list[str]) -> bool:
    return _run(argv, check=False).returncode == 0


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.returncode}")
    return result



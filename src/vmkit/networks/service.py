"""Private networks: VMs on one network reach each other by IP and by name, and nothing else
unless the network is NAT'ed.

A network is a Linux bridge (``vkb<hash>``) holding the subnet's first address, a dnsmasq on it
serving DHCP and DNS (each VM's name resolves to its address), and, for each VM NIC on it, a
TAP device (``vkt<hash>``) enslaved to the bridge. iptables rules tagged ``vmkit:<network>``
keep an isolated network to itself: the host answers its VMs' DHCP and DNS and nothing else,
and nothing is forwarded in or out. A NAT'ed network is masqueraded out through the host.

That needs root (bridges, TAP devices, firewall rules). A vmkitd that is not root (or runs
with VMKIT_NETWORKS=switch) makes each private network a switch of its own instead (switch.py):
QEMU dgram sockets, with DHCP and DNS served by vmkitd, always isolated. User-mode networks
(nat, restricted) need neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ..errors import ConflictError, HostError, InvalidInputError, NotFoundError
from ..machine.argv import nic_mac
from ..machine.jail import Jail
from ..paths import HomePaths
from ..spec import VmSpec, validate_name
from ..store import NetworkRecord, Store, VmRecord
from .switch import Port, Switch, mac_bytes


log = logging.getLogger("vmkit.networks")
BUILTIN = ("nat", "restricted", "none")
DEFAULT_POOL = ipaddress.ip_network("10.77.0.0/16")


def bridge_name(network: str) -> str:
    return "vkb" + hashlib.sha256(network.encode()).hexdigest()[:10]


def tap_name(vm: str, index: int) -> str:
    return "vkt" + hashlib.sha256(f"{vm}/{index}".encode()).hexdigest()[:10]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise HostError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


class Networks:
    def __init__(self, store: Store, paths: HomePaths, jail: Jail | None) -> None:
        self.store = store
        self.paths = paths
        self.jail = jail
        self.switched = os.geteuid() != 0 or os.environ.get("VMKIT_NETWORKS") == "switch"
        self.switches: dict[str, Switch] = {}

    def _dir(self, name: str) -> Path:
        return self.paths.root / "networks" / name

    # --- the registry ----------------------------------------------------------------------

    def create(self, name: str, subnet: str | None = None, isolated: bool = False
               ) -> dict[str, Any]:
        validate_name(name, "network")
        if name in BUILTIN:
            raise InvalidInputError(f"{name!r} is a built-in network mode; choose another name")
        if self.store.network(name):
            raise ConflictError(f"a network named {name} already exists; 'vmkit net ls' "
                                "lists them")
        net = self._subnet(subnet)
        record = NetworkRecord(name, str(net), isolated, time.time())
        self.store.add_network(record)
        try:
            self._up(record)
        except BaseException:
            self._down(record)
            self.store.remove_network(name)
            raise
        return self.describe(record)

    def _subnet(self, text: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        taken = [ipaddress.ip_network(n.subnet) for n in self.store.networks()]
        if text is None:
            for candidate in DEFAULT_POOL.subnets(new_prefix=24):
                if not any(candidate.overlaps(t) for t in taken) and not _routed(candidate):
                    return candidate
            raise ConflictError("no free /24 left in 10.77.0.0/16; give --subnet")
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as e:
            raise InvalidInputError(f"invalid subnet {text!r} ({e}); give a network such as "
                                    "10.77.0.0/24") from None
        if not isinstance(net, ipaddress.IPv4Network) or not 16 <= net.prefixlen <= 29 \
                or not net.is_private:
            raise InvalidInputError(f"subnet {text}: use a private IPv4 network from /16 to "
                                    "/29, such as 10.77.0.0/24")
        for other in self.store.networks():
            if net.overlaps(ipaddress.ip_network(other.subnet)):
                raise ConflictError(f"subnet {net} overlaps network {other.name} "
                                    f"({other.subnet}); choose another")
        if _routed(net):
            raise ConflictError(f"subnet {net} overlaps a network this host already routes; "
                                "choose another")
        return net

    def describe(self, net: NetworkRecord) -> dict[str, Any]:
        return {"name": net.name, "subnet": net.subnet,
                "isolated": net.isolated or self.switched,  # a switch leads nowhere else
                "gateway": str(next(ipaddress.ip_network(net.subnet).hosts())),
                "driver": "switch" if self.switched else "bridge",
                "bridge": "" if self.switched else bridge_name(net.name),
                "created": net.created,
                "vms": self.users(net.name)}

    def all(self) -> list[dict[str, Any]]:
        return [self.describe(n) for n in self.store.networks()]

    def get(self, name: str) -> NetworkRecord:
        net = self.store.network(name)
        if net is None:
            raise NotFoundError(f"no network named {name!r}; create it with 'vmkit net create "
                                f"{name}' ('vmkit net ls' lists them)")
        return net

    def users(self, name: str) -> list[str]:
        return [v.name for v in self.store.vms() if name in v.spec.attachments()]

    def remove(self, name: str) -> None:
        net = self.get(name)
        if users := self.users(name):
            raise ConflictError(f"network {name} is used by {', '.join(users)}; remove them "
                                "or their NICs first")
        self._down(net)
        self.store.remove_network(name)

    def check(self, attachments: tuple[str, ...]) -> None:
        """Every private network a VM is to be attached to exists (and can be used here)."""
        for name in attachments:
            if name not in BUILTIN:
                self.get(name)

    # --- bringing networks up and down --------------------------------------------------

    def restore(self) -> None:
        """After a daemon (or host) restart: every network up again."""
        for net in self.store.networks():
            try:
                self._up(net)
            except HostError as e:
                log.warning("network %s is not up: %s", net.name, e.message)

    def _up(self, net: NetworkRecord) -> None:
        if self.switched:
            self._start_switch(net)
            return
        br, subnet = bridge_name(net.name), ipaddress.ip_network(net.subnet)
        gateway = next(subnet.hosts())
        if _ip("link", "show", br, check=False).returncode != 0:
            _ip("link", "add", br, "type", "bridge")
        _ip("addr", "replace", f"{gateway}/{subnet.prefixlen}", "dev", br)
        _ip("link", "set", br, "up")
        for rule in _rules(net):
            if _iptables("-C", *rule, check=False) != 0:
                _iptables("-I", *rule)
        if not net.isolated:
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        self._start_dnsmasq(net)

    def _down(self, net: NetworkRecord) -> None:
        if (switch := self.switches.pop(net.name, None)) is not None:
            switch.close()
        self._stop_dnsmasq(net.name)
        for rule in _rules(net):
            while _iptables("-D", *rule, check=False) == 0:
                pass
        _ip("link", "del", bridge_name(net.name), check=False)
        shutil.rmtree(self._dir(net.name), ignore_errors=True)

    def _start_switch(self, net: NetworkRecord) -> None:
        d = self._dir(net.name)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        switch = Switch(d / "switch.sock", net.subnet, f"{net.name}.vmkit", d / "leases.json",
                        lambda: self._ports(net.name))
        switch.open()
        if self.jail:  # jailed QEMUs send to it as their user (and see its directory)
            self.jail.give(d, switch.path)
        self.switches[net.name] = switch

    def _ports(self, network: str) -> list[Port]:
        return [Port(mac_bytes(nic_mac(vm.mac, index)), vm.name,
                     str(self._nic_socket(vm.name, index)))
                for vm in self.store.vms()
                for index, name in enumerate(vm.spec.attachments()) if name == network]

    def _nic_socket(self, vm: str, index: int) -> Path:
        return self.paths.vm(vm).dir / f"net{index}.sock"

    def _start_dnsmasq(self, net: NetworkRecord) -> None:
        """(Re)start the network's dnsmasq with a DHCP entry, name by MAC, for each VM NIC."""
        self._stop_dnsmasq(net.name)
        d = self._dir(net.name)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        subnet = ipaddress.ip_network(net.subnet)
        hosts = list(subnet.hosts())
        gateway, first, last = hosts[0], hosts[min(9, len(hosts) - 2)], hosts[-1]
        argv = ["dnsmasq", "--conf-file=/dev/null", f"--pid-file={d / 'dnsmasq.pid'}",
                f"--interface={bridge_name(net.name)}", "--bind-interfaces",
                "--except-interface=lo", f"--listen-address={gateway}",
                f"--dhcp-range={first},{last},{subnet.netmask},12h",
                f"--dhcp-leasefile={d / 'leases'}", "--dhcp-authoritative", "--no-hosts",
                # VM names, bare or as NAME.NETWORK.vmkit, are answered here and never sent
                # upstream (an unknown one gets "no such name", not a refusal).
                f"--domain={net.name}.vmkit", "--local=/vmkit/", "--local=//",
                "--domain-needed", f"--log-facility={d / 'log'}",
                f"--dhcp-option=option:dns-server,{gateway}"]
        if net.isolated:  # no way out: no default route, no upstream DNS
            argv += ["--dhcp-option=option:router", "--no-resolv"]
        else:
            argv += [f"--dhcp-option=option:router,{gateway}"]
        for vm in self.store.vms():
            for index, name in enumerate(vm.spec.attachments()):
                if name == net.name:
                    argv.append(f"--dhcp-host={nic_mac(vm.mac, index)},{vm.name}")
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise HostError(f"dnsmasq did not start for network {net.name}: "
                            f"{result.stderr.strip()}")

    def _stop_dnsmasq(self, name: str) -> None:
        pidfile = self._dir(name) / "dnsmasq.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq":
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.01)
        pidfile.unlink(missing_ok=True)

    # --- VM NICs ---------------------------------------------------------------------------

    def plug(self, rec: VmRecord) -> dict[int, str]:
        """The QEMU netdev of each of the VM's NICs on a private network: {NIC: netdev}. A
        TAP device on the network's bridge, or a socket sending to the network's switch."""
        nics: dict[int, str] = {}
        for index, name in enumerate(rec.spec.attachments()):
            if name in BUILTIN:
                continue
            net = self.get(name)
            if self.switched:
                nics[index] = self._plug_switch(rec.name, index, net)
                continue
            tap = tap_name(rec.name, index)
            _ip("link", "del", tap, check=False)  # left over from a QEMU that died
            self._add_tap(tap)
            _ip("link", "set", tap, "master", bridge_name(name))
            _ip("link", "set", tap, "up")
            nics[index] = f"tap,ifname={tap},script=no,downscript=no"
            self._start_dnsmasq(net)  # with this VM's name for its MAC
        return nics

    def _plug_switch(self, vm: str, index: int, net: NetworkRecord) -> str:
        switch = self.switches.get(net.name)
        if switch is None:
            raise HostError(f"network {net.name} is not up; see vmkitd's log")
        switch.refresh()  # knows this NIC's MAC from now on
        nic = self._nic_socket(vm, index)
        nic.unlink(missing_ok=True)  # QEMU binds it anew
        return (f"dgram,local.type=unix,local.path={nic},"
                f"remote.type=unix,remote.path={switch.path}")

    def plug_loose(self, owner: str, spec: VmSpec, where: Path) -> dict[int, str]:
        """Netdevs leading nowhere for ``spec``'s private NICs: for a QEMU that loads a saved
        state but never runs the guest. They must be of the kind the VM's are (a TAP's state
        has offloads, a user netdev's has a section of its own): TAPs on no bridge, or
        sockets in ``where`` that the switch does not know."""
        nics = {}
        for index, name in enumerate(spec.attachments()):
            if name in BUILTIN:
                continue
            if self.switched:
                nics[index] = (f"dgram,local.type=unix,local.path={where}/net{index}.sock,"
                               f"remote.type=unix,remote.path={where}/nowhere.sock")
                continue
            tap = tap_name(owner, index)
            _ip("link", "del", tap, check=False)
            self._add_tap(tap)
            nics[index] = f"tap,ifname={tap},script=no,downscript=no"
        return nics

    def _add_tap(self, tap: str) -> None:
        jail = self.jail  # a jailed QEMU is not root: the TAP must be its user's
        _ip("tuntap", "add", "dev", tap, "mode", "tap",
            *(["user", str(jail.uid)] if jail else []))

    def unplug_loose(self, owner: str, spec: VmSpec) -> None:
        for index, name in enumerate(spec.attachments()):
            if name not in BUILTIN and not self.switched:
                _ip("link", "del", tap_name(owner, index), check=False)

    def unplug(self, rec: VmRecord) -> None:
        for index, name in enumerate(rec.spec.attachments()):
            if name in BUILTIN:
                continue
            if self.switched:
                self._nic_socket(rec.name, index).unlink(missing_ok=True)
            else:
                _ip("link", "del", tap_name(rec.name, index), check=False)


def _rules(net: NetworkRecord) -> list[list[str]]:
    """iptables rules (table, chain, match...) of a network; each carries its tag."""
    br, tag = bridge_name(net.name), ["-m", "comment", "--comment", f"vmkit:{net.name}"]
    if net.isolated:
        service = [["-t", "filter", "INPUT", "-i", br, "-p", proto, "--dport", port, *tag,
                    "-j", "ACCEPT"] for proto, port in (("udp", "67"), ("udp", "53"),
                                                         ("tcp", "53"))]
        # Inserted in reverse: the ACCEPTs end up above the DROPs.
        return [["-t", "filter", "INPUT", "-i", br, *tag, "-j", "DROP"], *service,
                ["-t", "filter", "FORWARD", "-i", br, *tag, "-j", "DROP"],
                ["-t", "filter", "FORWARD", "-o", br, *tag, "-j", "DROP"],
                ["-t", "filter", "FORWARD", "-i", br, "-o", br, *tag, "-j", "ACCEPT"]]
    return [["-t", "nat", "POSTROUTING", "-s", net.subnet, "!", "-d", net.subnet, *tag,
             "-j", "MASQUERADE"],
            ["-t", "filter", "FORWARD", "-i", br, *tag, "-j", "ACCEPT"],
            ["-t", "filter", "FORWARD", "-o", br, "-m", "conntrack", "--ctstate",
             "RELATED,ESTABLISHED", *tag, "-j", "ACCEPT"]]


def _iptables(action: str, table_flag: str, table: str, chain: str, *rule: str,
              check: bool = True) -> int:
    argv = ["iptables", "-w", table_flag, table, action, chain, *rule]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.returncode


def _routed(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether the host already has an address or route in ``net``."""
    out = _ip("-4", "route", "show", "table", "all", check=False).stdout
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("default", "broadcast", "local"):
            word = line.split()[1] if word != "default" and len(line.split()) > 1 else ""
        with contextlib.suppress(ValueError):
            if word and net.overlaps(ipaddress.ip_network(word, strict=False)):
                return True
    return False

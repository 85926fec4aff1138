"""A private network without root: a virtual switch inside vmkitd.

Each VM NIC on the network is a QEMU ``dgram`` netdev: a unix datagram socket of its own in its
VM directory, sending every Ethernet frame to the network's switch socket. The switch forwards
a frame to the NIC that has its destination MAC, or floods it to every NIC of the network, and
drops frames whose source MAC is not the sending NIC's (no spoofing another VM). It also
plays the network's DHCP and DNS server at the subnet's first address: each VM gets a stable
address and its name resolves to it. There is no route anywhere else: such a network is
always isolated. Nothing here needs a privilege: no bridge, TAP, firewall rule or IP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..paths import atomic_write

BROADCAST = b"\xff" * 6
ETH_IPV4, ETH_ARP = 0x0800, 0x0806
DHCP_SERVER, DHCP_CLIENT, DNS = 67, 68, 53
DHCP_MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6
LEASE_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Port:
    """One VM NIC on the switch."""
    mac: bytes
    vm: str
    path: str  # its QEMU's socket


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


class Switch:
    """``ports()`` names the NICs on the network now (called again after ``refresh``)."""

    def __init__(self, path: Path, subnet: str, domain: str, leases: Path,
                 ports: Callable[[], list[Port]]) -> None:
        self.path, self.domain, self.leases_path = path, domain, leases
        self.subnet = ipaddress.IPv4Network(subnet)
        hosts = list(self.subnet.hosts())
        self.gateway, self.pool = hosts[0], hosts[min(9, len(hosts) - 2):]
        self.mac = b"\x52\x54\x00\xff" + self.gateway.packed[-2:]
        self._list_ports = ports
        self.by_mac: dict[bytes, Port] = {}
        self.leases: dict[str, str] = {}  # MAC (text) -> address
        self.sock: socket.socket | None = None

    # --- life -------------------------------------------------------------------------------

    def open(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.leases = json.loads(self.leases_path.read_text())
        self.path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self.sock.bind(str(self.path))
        self.path.chmod(0o600)
        self.refresh()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.path.unlink(missing_ok=True)

    def refresh(self) -> None:
        """Read the network's NICs again (a VM was plugged in or removed)."""
        self.by_mac = {p.mac: p for p in self._list_ports()}

    # --- frames -----------------------------------------------------------------------------

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                frame, sender = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            for out, to in self.handle(frame, sender):
                self._send(out, to)

    def _send(self, frame: bytes, path: str) -> None:
        assert self.sock is not None
        with contextlib.suppress(OSError):  # a NIC whose QEMU is gone: the frame is lost
            self.sock.sendto(frame, path)

    def handle(self, frame: bytes, sender: str) -> list[tuple[bytes, str]]:
        """Where ``frame`` from the NIC at ``sender`` goes: (frame, socket) pairs."""
        if len(frame) < 14:
            return []
        dst, src = frame[:6], frame[6:12]
        port = self.by_mac.get(src)
        if port is None or port.path != sender:
            return []  # not the MAC this NIC was given
        out: list[tuple[bytes, str]] = []
        if dst in (self.mac, BROADCAST):
            reply = self.answer(frame, port)
            if reply is not None:
                out.append((reply, sender))
        if dst == self.mac:
            return out
        if dst in self.by_mac:
            return out + [(frame, self.by_mac[dst].path)]
        if dst[0] & 1:  # broadcast or multicast: everyone else on the network
            out += [(frame, p.path) for p in self.by_mac.values() if p.path != sender]
        return out

    def answer(self, frame: bytes, port: Port) -> bytes | None:
        """The switch's own reply to ``frame``: ARP for the gateway, DHCP, DNS."""
        kind = struct.unpack("!H", frame[12:14])[0]
        if kind == ETH_ARP:
            return self._arp(frame)
        if kind != ETH_IPV4 or len(frame) < 42 or frame[23] != socket.IPPROTO_UDP:
            return None
        ihl = (frame[14] & 0x0F) * 4
        udp = 14 + ihl
        src_port, dst_port = struct.unpack("!HH", frame[udp:udp + 4])
        payload = frame[udp + 8:]
        if dst_port == DHCP_SERVER:
            return self._dhcp(payload, port)
        if dst_port == DNS and frame[30:34] == self.gateway.packed:
            reply = self._dns(payload)
            return reply and _udp(self.mac, frame[6:12], self.gateway.packed, frame[26:30],
                                  DNS, src_port, reply)
        return None

    def _arp(self, frame: bytes) -> bytes | None:
        arp = frame[14:42]
        if len(arp) < 28 or arp[6:8] != b"\x00\x01" or arp[24:28] != self.gateway.packed:
            return None
        sender_mac, sender_ip = arp[8:14], arp[14:18]
        body = (b"\x00\x01\x08\x00\x06\x04\x00\x02" + self.mac + self.gateway.packed
                + sender_mac + sender_ip)
        return sender_mac + self.mac + struct.pack("!H", ETH_ARP) + body

    # --- DHCP -------------------------------------------------------------------------------

    def lease(self, mac: str) -> ipaddress.IPv4Address:
        """The address of the NIC with ``mac``: the same one each time."""
        if mac not in self.leases:
            taken = set(self.leases.values())
            free = next((a for a in self.pool if str(a) not in taken), None)
            if free is None:
                raise OSError(f"no free address left in {self.subnet}")
            self.leases[mac] = str(free)
            atomic_write(self.leases_path, json.dumps(self.leases).encode())
        return ipaddress.IPv4Address(self.leases[mac])

    def _dhcp(self, msg: bytes, port: Port) -> bytes | None:
        if len(msg) < 240 or msg[0] != 1 or msg[236:240] != DHCP_MAGIC:
            return None
        options = _dhcp_options(msg[240:])
        kind = options.get(53, b"\x00")[0]
        mac = ":".join(f"{b:02x}" for b in port.mac)
        try:
            address = self.lease(mac)
        except OSError:
            return None
        if kind == DISCOVER:
            reply = OFFER
        elif kind == REQUEST:
            wanted = options.get(50) or msg[12:16]
            reply = ACK if wanted == address.packed else NAK
        else:
            return None
        opts = [(53, bytes([reply])), (54, self.gateway.packed)]
        if reply != NAK:
            opts += [(51, struct.pack("!I", LEASE_SECONDS)), (1, self.subnet.netmask.packed),
                     (6, self.gateway.packed), (15, self.domain.encode()),
                     (12, port.vm.encode())]  # no router (3): there is no way out
        body = (b"\x02\x01\x06\x00" + msg[4:8] + b"\x00\x00" + msg[10:12] + b"\x00" * 4
                + (address.packed if reply != NAK else b"\x00" * 4) + self.gateway.packed
                + b"\x00" * 4 + msg[28:44] + b"\x00" * 192 + DHCP_MAGIC
                + b"".join(bytes([code, len(v)]) + v for code, v in opts) + b"\xff")
        return _udp(self.mac, BROADCAST, self.gateway.packed, b"\xff" * 4, DHCP_SERVER,
                    DHCP_CLIENT, body)

    # --- DNS --------------------------------------------------------------------------------

    def resolve(self, name: str) -> ipaddress.IPv4Address | None | bool:
        """The address of VM ``name`` (bare or NAME.DOMAIN); False: no such VM here."""
        name = name.lower().rstrip(".")
        name = name.removesuffix("." + self.domain)
        for port in self.by_mac.values():
            if port.vm == name:
                mac = ":".join(f"{b:02x}" for b in port.mac)
                return ipaddress.IPv4Address(self.leases[mac]) if mac in self.leases else None
        return False

    def _dns(self, msg: bytes) -> bytes | None:
        if len(msg) < 12 or msg[2] & 0x80 or struct.unpack("!H", msg[4:6])[0] != 1:
            return None
        labels, i = [], 12
        while i < len(msg) and msg[i]:
            labels.append(msg[i + 1:i + 1 + msg[i]].decode("ascii", "replace"))
            i += 1 + msg[i]
        question_end = i + 5
        if question_end > len(msg):
            return None
        qtype = struct.unpack("!H", msg[i + 1:i + 3])[0]
        found = self.resolve(".".join(labels))
        rcode = 3 if found is False else 0  # NXDOMAIN for a name that is no VM here
        answers = b""
        if isinstance(found, ipaddress.IPv4Address) and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + found.packed
        flags = 0x8400 | (struct.unpack("!H", msg[2:4])[0] & 0x0100) | rcode  # QR, AA, RD
        header = msg[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        return header + msg[12:question_end] + answers


def _dhcp_options(data: bytes) -> dict[int, bytes]:
    options, i = {}, 0
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        code, length = data[i], data[i + 1]
        options[code] = data[i + 2:i + 2 + length]
        i += 2 + length
    return options


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp(src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes, src_port: int,
         dst_port: int, payload: bytes) -> bytes:
    """An Ethernet frame holding a UDP datagram (no UDP checksum: optional over IPv4)."""
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_IPV4) + ip + udp

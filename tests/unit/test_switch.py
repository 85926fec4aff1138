"""The switch of a private network without root (switch.py): frames, DHCP, DNS, ARP."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

from vmkit.networks.switch import BROADCAST, DHCP_MAGIC, Port, Switch, _udp

A, B = Port(bytes.fromhex("525400000001"), "a", "/a"), Port(bytes.fromhex("525400000002"), "b", "/b")


def make(tmp_path: Path) -> Switch:
    s = Switch(tmp_path / "sw.sock", "10.9.0.0/24", "lab.vmkit", tmp_path / "leases.json",
               lambda: [A, B])
    s.refresh()
    return s


def dhcp(port: Port, kind: int, requested: bytes | None = None) -> bytes:
    opts = bytes([53, 1, kind]) + (bytes([50, 4]) + requested if requested else b"") + b"\xff"
    msg = (b"\x01\x01\x06\x00" + b"\x12\x34\x56\x78" + b"\x00" * 20 + port.mac + b"\x00" * 10
           + b"\x00" * 192 + DHCP_MAGIC + opts)
    return _udp(port.mac, BROADCAST, b"\x00" * 4, b"\xff" * 4, 68, 67, msg)


def options(frame: bytes) -> dict[int, bytes]:
    body, out, i = frame[42 + 240:], {}, 0
    while body[i] != 255:
        out[body[i]] = body[i + 2:i + 2 + body[i + 1]]
        i += 2 + body[i + 1]
    return out


def test_dhcp_gives_each_nic_a_stable_address_and_no_route(tmp_path: Path) -> None:
    s = make(tmp_path)
    offer = s.answer(dhcp(A, 1), A)
    assert offer is not None and offer[:6] == BROADCAST
    address = offer[42 + 16:42 + 20]
    assert ipaddress.IPv4Address(address) == ipaddress.IPv4Address("10.9.0.10")
    opts = options(offer)
    assert opts[53] == b"\x02" and opts[12] == b"a" and 3 not in opts  # no router
    assert opts[6] == ipaddress.IPv4Address("10.9.0.1").packed
    ack = s.answer(dhcp(A, 3, address), A)
    assert ack is not None and options(ack)[53] == b"\x05"
    nak = s.answer(dhcp(A, 3, b"\x0a\x09\x00\x63"), A)
    assert nak is not None and options(nak)[53] == b"\x06"
    assert make(tmp_path).lease("52:54:00:00:00:01") == ipaddress.IPv4Address(address)


def test_dns_answers_vm_names_only(tmp_path: Path) -> None:
    s = make(tmp_path)
    s.lease("52:54:00:00:00:02")

    def ask(name: str) -> bytes:
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
        frame = _udp(A.mac, s.mac, b"\x0a\x09\x00\x0a", s.gateway.packed, 5353, 53,
                     b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + q)
        reply = s.answer(frame, A)
        assert reply is not None and reply[:6] == A.mac
        return reply[42:]

    for name in ("b", "B.lab.vmkit"):
        msg = ask(name)
        assert msg[:2] == b"\xab\xcd" and struct.unpack("!H", msg[6:8])[0] == 1
        assert msg[-4:] == ipaddress.IPv4Address("10.9.0.10").packed
    assert ask("nosuch")[3] & 0x0F == 3  # NXDOMAIN


def test_frames_go_to_their_mac_or_everyone_and_spoofs_are_dropped(tmp_path: Path) -> None:
    s = make(tmp_path)
    unicast = B.mac + A.mac + b"\x08\x00" + b"x" * 50
    assert s.handle(unicast, "/a") == [(unicast, "/b")]
    assert s.handle(unicast, "/b") == []  # A's MAC sent from B's socket
    flood = BROADCAST + A.mac + b"\x86\xdd" + b"x" * 50
    assert s.handle(flood, "/a") == [(flood, "/b")]


def test_arp_for_the_gateway_is_answered(tmp_path: Path) -> None:
    s = make(tmp_path)
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + A.mac + b"\x0a\x09\x00\x0a" + b"\x00" * 6
           + s.gateway.packed)
    reply = s.answer(BROADCAST + A.mac + b"\x08\x06" + arp, A)
    assert reply is not None and reply[:6] == A.mac and reply[22:28] == s.mac

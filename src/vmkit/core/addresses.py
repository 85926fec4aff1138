"""The guests' IP addresses, as their agents report them (guest-network-get-interfaces), kept
for listings. Why the agent: it knows every kind of network (NAT, private networks with DHCP,
addresses the guest set itself), where DHCP leases know only private networks. Listing VMs
must not wait on agents ('vmkit ls' answers in milliseconds), so a listing shows what was
learnt last and asks again in the background when that is older than FRESH seconds; the
describe that ends a start or create asks first, so the address is there moments later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import VmkitError
from ..machine.process import Machine

FRESH = 10.0  # seconds


def guest_addresses(nics: Any) -> list[str]:
    """The addresses in a guest-network-get-interfaces answer, but loopback and link-local."""
    found: list[str] = []
    for nic in nics if isinstance(nics, list) else []:
        if not isinstance(nic, dict) or nic.get("name") == "lo":
            continue
        for a in nic.get("ip-addresses") or []:
            ip = str(a.get("ip-address") or "") if isinstance(a, dict) else ""
            if ip and not ip.startswith(("fe80:", "127.")) and ip != "::1":
                found.append(ip)
    return found


class Addresses:
    def __init__(self, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change  # a VM's addresses changed: tell the events feed
        self._known: dict[str, tuple[float, list[str]]] = {}
        self._asking: set[str] = set()

    def get(self, name: str, machine: Machine | None,
            spawn: Callable[[Coroutine[Any, Any, None]], object]) -> list[str]:
        """VM ``name``'s addresses as last learnt (none while its agent is not connected),
        asking its agent again in the background when they are not fresh."""
        if machine is None or not machine.agent.connected:
            self._known.pop(name, None)
            return []
        when, ips = self._known.get(name, (0.0, []))
        if time.monotonic() - when > FRESH and name not in self._asking:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # not on the daemon's loop: no background work from here
                return ips
            self._asking.add(name)
            spawn(self._ask(name, machine))
        return ips

    async def _ask(self, name: str, machine: Machine) -> None:
        try:
            nics = await machine.agent.execute("guest-network-get-interfaces", timeout=2.0)
        except VmkitError:
            return  # asked again at the next listing
        finally:
            self._asking.discard(name)
        before = self._known.get(name, (0.0, []))[1]
        self._known[name] = (time.monotonic(), guest_addresses(nics))
        if self._known[name][1] != before:
            self._on_change(name)

"""Who a guest is: given to a fork (and refreshed after a restore) through the guest agent.

Forks of one snapshot start as byte-identical copies of one guest: same hostname, MAC,
machine-id, the same kernel RNG state (so the same "random" bytes) and a wall clock frozen at
snapshot time. The guest-side helper (images/guest/identity, a perl script) fixes all of it
before the fork is reported ready:

- 32 bytes from the host's RNG are mixed into the kernel's pool and the RNG is reseeded at
  once (ioctl RNDRESEEDCRNG): Debian's kernel has no VM generation ID device to do it;
- the clock is set to the host's time as sent (clock_settime); the time the request takes
  to arrive is the error;
- the hostname (also in /etc/hosts) and /etc/machine-id are rewritten; under systemd,
  journald is restarted to write under the new machine-id;
- each NIC takes the fork's MAC for it (virtio-net changes it live) and, with arp_notify on,
  the kernel announces it, so the NAT learns it before the first forwarded connection; the
  IPv6 addresses made from the old MAC give way to the new MAC's link-local address;
- NICs on private networks take a new DHCP lease (a new address, and the fork's name in
  DNS); user-mode NICs keep theirs, which their port forwards point at (slirp would lease a
  new MAC another address). Under systemd-networkd, that is networkd stopped while the MACs
  change and started again, with such a NIC's lease pinned as static configuration in /run
  until the next boot.

In the tiny image the helper is resident (started at boot, so it is in every snapshot):
asking it costs a few agent calls. Elsewhere vmkit runs it once through guest-exec, which
costs a perl start, about 0.3-0.5 s under TCG, and in a Debian guest 4-5 s in all (restarting
journald and networkd, and the new link-local address's duplicate detection).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
import uuid
from dataclasses import dataclass
from importlib import resources

from .agent import GuestAgent
from ..errors import AgentError

FIFO = "/run/vmkit-identity"  # where the resident helper reads requests (see rcS)
RESIDENT_WAIT = 2.0  # seconds before giving up on a resident helper that does not answer


def random_mac() -> str:
    """A MAC in QEMU's locally administered range (52:54:00), random in its last 3 bytes."""
    return "52:54:00:%02x:%02x:%02x" % tuple(random.randbytes(3))


@dataclass(frozen=True)
class Identity:
    """What makes a fork itself. Empty fields are left as they are (a restore keeps its own)."""
    hostname: str = ""
    mac: str = ""  # of each NIC in order, comma-separated
    machine_id: str = ""
    renew: tuple[int, ...] = ()  # NICs to take a new DHCP lease on (private networks)

    @classmethod
    def new(cls, hostname: str, mac: str, renew: tuple[int, ...] = ()) -> Identity:
        return cls(hostname, mac, uuid.uuid4().hex, renew)

    def args(self) -> list[str]:
        """The helper's arguments, taken now (the time is part of them)."""
        now = time.time_ns()
        return [self.hostname or "-", self.machine_id or "-", self.mac or "-",
                os.urandom(32).hex(), str(now // 10**9), str(now % 10**9),
                ",".join(map(str, self.renew)) or "-"]


async def apply(agent: GuestAgent, identity: Identity, timeout: float = 30.0) -> None:
    """Give the guest ``identity``, fresh randomness and the host's time; raise if it fails."""
    if not await _ask_resident(agent, identity):
        await _run_once(agent, identity, timeout)


async def wait_resident(agent: GuestAgent, timeout: float = 5.0) -> None:
    """Wait until the resident helper listens (a VM about to become a template)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await agent.execute("guest-file-close", {"handle": await agent.execute(
                "guest-file-open", {"path": f"{FIFO}.ready", "mode": "r"})})
            return
        except AgentError:
            if time.monotonic() > deadline:
                return  # an image without the helper: its forks run it once instead
            await asyncio.sleep(0.02)


async def _ask_resident(agent: GuestAgent, identity: Identity) -> bool:
    """Have the resident helper do it; False if there is none (or it does not answer)."""
    nonce = os.urandom(8).hex()
    try:  # "r+": opening a FIFO read-write never blocks, even with nobody reading it
        handle = await agent.execute("guest-file-open", {"path": FIFO, "mode": "r+"})
    except AgentError:
        return False
    try:
        line = " ".join([nonce, *identity.args()]) + "\n"
        await agent.execute("guest-file-write", {"handle": handle,
                                                 "buf-b64": base64.b64encode(line.encode()).decode()})
    finally:
        await agent.execute("guest-file-close", {"handle": handle})
    # A new DHCP lease takes the guest a second or two more.
    deadline = time.monotonic() + RESIDENT_WAIT + 5.0 * len(identity.renew)
    while True:
        try:
            handle = await agent.execute("guest-file-open", {"path": f"{FIFO}.{nonce}",
                                                             "mode": "r"})
            break
        except AgentError:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
    try:
        answer = base64.b64decode((await agent.execute(
            "guest-file-read", {"handle": handle}))["buf-b64"]).decode(errors="replace")
    finally:
        await agent.execute("guest-file-close", {"handle": handle})
    if answer != "ok\n":
        raise AgentError(f"the guest could not take its new identity: {answer.strip()}")
    return True


async def _run_once(agent: GuestAgent, identity: Identity, timeout: float) -> None:
    program = resources.files("vmkit.images").joinpath("guest", "identity").read_text()
    pid = (await agent.execute("guest-exec", {
        "path": "perl", "arg": ["-e", program, *identity.args()],
        "capture-output": True}))["pid"]
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        status = await agent.execute("guest-exec-status", {"pid": pid})
        if status["exited"]:
            break
        if time.monotonic() > deadline:
            raise AgentError(f"the guest did not take its new identity within {timeout:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    if status.get("exitcode") != 0:
        err = base64.b64decode(status.get("err-data", "")).decode(errors="replace").strip()
        raise AgentError(f"the guest could not take its new identity: {err or status}")

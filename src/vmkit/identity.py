"""Who a guest is: given to a fork (and refreshed after a restore) through the guest agent.

Forks of one snapshot start as byte-identical copies of one guest: same hostname, MAC,
machine-id, the same kernel RNG state (so the same "random" bytes) and a wall clock frozen at
snapshot time. One program, run through the agent before the fork is reported ready, fixes
all of it:

- the hostname and /etc/machine-id are rewritten;
- the NIC takes the fork's MAC (virtio-net changes it live) and, with arp_notify on, the
  kernel announces it, so the NAT learns it before the first forwarded connection;
- 32 bytes from the host's RNG are mixed into the kernel's pool and the RNG is reseeded at
  once (ioctl RNDRESEEDCRNG): Debian's kernel has no VM generation ID device to do it;
- the clock is set to the host's time as sent (clock_settime); the command's latency, about
  0.1-0.3 s under TCG, is the error.

It is perl, without modules, because the guest has no other way to make those system calls,
and one process starts faster than a shell running five tools (the cost under TCG is mostly
translating each new program's code).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
import uuid
from dataclasses import dataclass

from .agent import GuestAgent
from .errors import AgentError

# Arguments: hostname, machine-id, MAC (each may be empty: left as is), seed (hex), seconds,
# nanoseconds. System call and ioctl numbers are x86-64 Linux's.
PROGRAM = r"""
my ($name, $id, $mac, $seed, $sec, $nsec) = @ARGV;
sub put {
    my ($path, $text) = @_;
    open(my $f, ">", $path) or die "$path: $!\n";
    print $f $text;
    close($f) or die "$path: $!\n";
}
if ($name ne "") {
    syscall(170, $name, length $name) == 0 or die "sethostname: $!\n";
    put("/etc/hostname", "$name\n");
}
put("/etc/machine-id", "$id\n") if $id ne "";
if ($mac ne "") {
    opendir(my $d, "/sys/class/net") or die "/sys/class/net: $!\n";
    my ($nic) = sort grep { !/^(\.|lo$)/ } readdir($d);
    put("/proc/sys/net/ipv4/conf/$nic/arp_notify", "1");
    socket(my $s, 2, 2, 0) or die "socket: $!\n";
    my $ifreq = pack("a16 S C6 x32", $nic, 1, map { hex } split(/:/, $mac));
    ioctl($s, 0x8924, $ifreq) or die "set MAC of $nic: $!\n";    # SIOCSIFHWADDR
}
open(my $r, ">", "/dev/urandom") or die "/dev/urandom: $!\n";
syswrite($r, pack("H*", $seed)) or die "/dev/urandom: $!\n";
ioctl($r, 0x5207, 0) or die "reseed: $!\n";                      # RNDRESEEDCRNG
syscall(227, 0, pack("q2", $sec, $nsec)) == 0 or die "clock: $!\n";  # clock_settime
"""


def random_mac() -> str:
    """A MAC in QEMU's locally administered range (52:54:00), random in its last 3 bytes."""
    return "52:54:00:%02x:%02x:%02x" % tuple(random.randbytes(3))


@dataclass(frozen=True)
class Identity:
    """What makes a fork itself. Empty fields are left as they are (a restore keeps its own)."""
    hostname: str = ""
    mac: str = ""
    machine_id: str = ""

    @classmethod
    def new(cls, hostname: str, mac: str) -> Identity:
        return cls(hostname, mac, uuid.uuid4().hex)


async def apply(agent: GuestAgent, identity: Identity, timeout: float = 10.0) -> None:
    """Give the guest ``identity``, fresh randomness and the host's time; raise if it fails."""
    now = time.time_ns()
    argv = ["-e", PROGRAM, identity.hostname, identity.machine_id, identity.mac,
            os.urandom(32).hex(), str(now // 10**9), str(now % 10**9)]
    pid = (await agent.execute("guest-exec", {"path": "/usr/bin/perl", "arg": argv,
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

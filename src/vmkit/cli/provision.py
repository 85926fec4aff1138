"""The ssh command line of 'vmkit ssh': the VM's forwarded port and the private key here that
it accepts. (Which key a new VM gets is the SDK's: vmkit.client.provision.)"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

from ..client.provision import USER_KEYS, given_keys, vmkit_key
from ..errors import InvalidInputError

if TYPE_CHECKING:
    from .render import Record


def _blob(line: str) -> bytes:
    parts = line.split()
    return base64.b64decode(parts[1]) if len(parts) > 1 else b""


def private_key_for(keys: str) -> Path | None:
    """The private key here whose public half the VM accepts: one given with --ssh-key at
    its creation (newest first), the user's own in ~/.ssh, or vmkit's."""
    wanted = {_blob(line) for line in keys.splitlines() if line.strip()}
    candidates = given_keys()[::-1] + [Path.home() / ".ssh" / f"{n}.pub" for n in USER_KEYS]
    candidates += sorted((Path.home() / ".ssh").glob("*.pub")) + [
        vmkit_key().with_name(vmkit_key().name + ".pub")]
    for pub in candidates:
        try:
            if _blob(pub.read_text().strip()) in wanted and pub.with_suffix("").is_file():
                return pub.with_suffix("")
        except (OSError, ValueError):
            continue
    return None


def ssh_argv(vm: Record, identity: Path | None, user: str, command: list[str]
             ) -> list[str]:
    """ssh to the VM through its forwarded port, with the key it was given."""
    forward = next((p for p in vm["ports"] if p["guest_port"] == 22 and p["proto"] == "tcp"),
                   None)
    if forward is None:
        raise InvalidInputError(
            f"VM {vm['name']} forwards no host port to its port 22: create it with "
            "-p PORT:22 (images with cloud-init get one by themselves on nat or restricted)")
    if identity is None:
        identity = private_key_for(vm.get("ssh_keys") or "")
        if identity is None:
            raise InvalidInputError(f"no private key here matches the keys VM {vm['name']} "
                                    "accepts: give one with -i KEY")
    host = forward["host_addr"]
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    # The VM made its host keys at first boot and the port is on this host: nothing to
    # verify them against, and remembering them would clash with the next VM on the port.
    return ["ssh", "-i", str(identity), "-p", str(forward["host_port"]),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", f"{user}@{host}", *command]

"""The client side of provisioning: which ssh key a new VM gets, the files the user names
(read and checked here, so a mistake names the file before anything boots), and the ssh
command line of 'vmkit ssh'."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..spec import cloud as seed

if TYPE_CHECKING:
    from .render import Record

USER_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")  # the user's own, in order of preference


def vmkit_key() -> Path:
    """vmkit's own key pair, for users who have none: made on first use, private to them."""
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
    return data / "vmkit" / "ssh" / "id_ed25519"


def default_public_key() -> Path:
    """The public key a new VM accepts when no --ssh-key is given."""
    for name in USER_KEYS:
        pub = Path.home() / ".ssh" / f"{name}.pub"
        if pub.is_file() and pub.with_suffix("").is_file():
            return pub
    key = vmkit_key()
    if not key.exists():
        key.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmkit",
                        "-f", str(key)], check=True, capture_output=True)
    return key.with_name(key.name + ".pub")


def _read(path: Path, what: str) -> str:
    try:
        return path.expanduser().read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "it is not a text file"
        raise InvalidInputError(f"cannot read the {what} {path}: {reason}") from None


def read_inputs(ssh_key: Path | None, user_data: Path | None, env: list[str] | None
                ) -> dict[str, Any]:
    """create_vm's provisioning arguments from the command line's files, checked."""
    key = ssh_key or default_public_key()
    text = _read(user_data, "user data") if user_data else None
    if text is not None:
        seed.read_user_data(text, str(user_data))  # the error names the file and line
    return {"ssh_keys": seed.read_ssh_key(_read(key, "ssh key"), str(key)),
            "user_data": text, "env": seed.parse_env(env or [])}


def _blob(line: str) -> bytes:
    parts = line.split()
    return base64.b64decode(parts[1]) if len(parts) > 1 else b""


def private_key_for(keys: str) -> Path | None:
    """The private key here whose public half the VM accepts."""
    wanted = {_blob(line) for line in keys.splitlines() if line.strip()}
    candidates = [Path.home() / ".ssh" / f"{n}.pub" for n in USER_KEYS]
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

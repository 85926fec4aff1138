"""The client's side of provisioning: which ssh key a new VM gets, and the files the user
names (read and checked here, so a mistake names the file before anything boots). These read
the caller's own files, so they run where the caller is, not in vmkitd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..spec import cloud

if TYPE_CHECKING:
    pass

USER_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")  # the user's own, in order of preference
MAX_GIVEN = 100


def vmkit_key() -> Path:
    """vmkit's own key pair, for users who have none: made on first use, private to them."""
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
    return data / "vmkit" / "ssh" / "id_ed25519"


def given_keys_file() -> Path:
    """The public key files given to new VMs here (--ssh-key), one path a line, newest last:
    'vmkit ssh' looks for their private halves (a key of your own anywhere is found)."""
    return vmkit_key().with_name("given")


def given_keys() -> list[Path]:
    try:
        return [Path(line) for line in given_keys_file().read_text().splitlines() if line]
    except OSError:
        return []


def remember_key(pub: Path) -> None:
    """Add ``pub`` to the keys given to new VMs (the last MAX_GIVEN of them are kept)."""
    from ..paths import atomic_write

    path = str(pub.expanduser().absolute())
    kept = [str(p) for p in given_keys() if str(p) != path][-(MAX_GIVEN - 1):] + [path]
    try:
        given_keys_file().parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        atomic_write(given_keys_file(), "".join(p + "\n" for p in kept).encode())
    except OSError:
        pass  # only a convenience: 'vmkit ssh -i KEY' still works


def default_public_key() -> Path:
    """The public key a new VM accepts when no ssh key is given."""
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
    """The provisioning arguments of a new VM from the caller's files, checked: its ssh key
    (the caller's default one if None), its #cloud-config and KEY=VALUE variables."""
    key = ssh_key or default_public_key()
    text = _read(user_data, "user data") if user_data else None
    if text is not None:
        cloud.read_user_data(text, str(user_data))  # the error names the file and line
    keys = cloud.read_ssh_key(_read(key, "ssh key"), str(key))
    if ssh_key is not None:
        remember_key(ssh_key)
    return {"ssh_keys": keys, "user_data": text, "env": cloud.parse_env(env or [])}

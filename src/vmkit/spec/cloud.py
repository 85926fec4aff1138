"""What a user hands cloud-init (SSH keys, user data, environment variables), checked before a
VM exists, with messages that say how to fix it: a mistake found by cloud-init inside the
guest shows up only in a boot log. The client checks the same before it sends them."""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import Any

import yaml

from ..errors import InvalidInputError

DEFAULT_USER = "debian"  # the user vmkit creates and that 'vmkit ssh' logs in as
ENV_FILE = "/etc/profile.d/vmkit-env.sh"
SUDO_ALL = "ALL=(ALL) NOPASSWD:ALL"

# Key type -> how many length-prefixed strings its blob holds (the type name included), so a
# blob cut short or padded with junk is caught even when its base64 still decodes.
_KEY_FIELDS = {
    "ssh-ed25519": 2,  # type, key
    "ssh-rsa": 3,  # type, e, n
    "ecdsa-sha2-nistp256": 3,  # type, curve, point
    "ecdsa-sha2-nistp384": 3,
    "ecdsa-sha2-nistp521": 3,
    "sk-ssh-ed25519@openssh.com": 3,  # type, key, application
    "sk-ecdsa-sha2-nistp256@openssh.com": 4,  # type, curve, point, application
}
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USER_DATA_HEADER = "#cloud-config"


# --- SSH keys -------------------------------------------------------------------------------


def _blob_fields(blob: bytes) -> list[bytes] | None:
    """Split an SSH wire-format blob into its length-prefixed strings; None if it is torn."""
    fields, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            return None
        (size,) = struct.unpack(">I", blob[pos:pos + 4])
        pos += 4
        if pos + size > len(blob):
            return None
        fields.append(blob[pos:pos + size])
        pos += size
    return fields


def _key_problem(line: str) -> str | None:
    """What is wrong with one public key line, or None if it is a usable key."""
    parts = line.split(None, 2)
    if len(parts) < 2:
        return "it has no key data after the type"
    kind, data = parts[0], parts[1]
    if kind not in _KEY_FIELDS:
        return f"unknown key type {kind[:40]!r}"
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "its base64 data is damaged (cut short or mistyped?)"
    fields = _blob_fields(blob)
    if not fields:
        return "its key data is damaged (cut short or mistyped?)"
    if fields[0] != kind.encode():
        label = fields[0][:40].decode("ascii", "replace")
        return f"the line says {kind!r} but its key data is a {label!r} key"
    if len(fields) != _KEY_FIELDS[kind]:
        return "its key data is damaged (cut short or mistyped?)"
    return None


def read_ssh_key(text: str, source: str) -> str:
    """The public key lines of ``text`` (an id_*.pub or authorized_keys-like file), checked
    and joined by newlines. Checked here because a bad key only shows up later as an SSH login
    that fails with no reason given. Blank lines and '#' comments are skipped."""
    if "-----BEGIN" in text and "PRIVATE KEY-----" in text:
        raise InvalidInputError(f"{source} is a private key; give the public one ({source}.pub)")
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        problem = _key_problem(line)
        if problem:
            raise InvalidInputError(
                f"{source} is not an OpenSSH public key (line {number}: {problem}): give a "
                f"line like 'ssh-ed25519 AAAAC3Nza... you@host', e.g. the content of "
                f"~/.ssh/id_ed25519.pub"
            )
        keys.append(" ".join(line.split(None, 2)))  # tabs and runs of spaces -> one space
    if not keys:
        raise InvalidInputError(
            f"{source} holds no SSH public key: give a file like ~/.ssh/id_ed25519.pub"
        )
    return "\n".join(keys)


# --- user data ------------------------------------------------------------------------------


def _yaml_error(err: yaml.YAMLError, text: str, source: str) -> InvalidInputError:
    """A YAML error as one sentence with the 1-based line and column the user's editor shows."""
    if isinstance(err, yaml.reader.ReaderError):  # a control character: no mark, an offset
        before = text[:err.position]
        line, column = before.count("\n") + 1, err.position - before.rfind("\n")
        code = err.character if isinstance(err.character, int) else ord(err.character)
        why = f"character #x{code:02x} is not allowed in YAML (a control character?)"
    else:
        mark = getattr(err, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        why = str(getattr(err, "problem", None) or err)
        context = getattr(err, "context", None)
        if context:
            why += f" ({context})"
        if "'\\t'" in why:
            why += "; indent with spaces, not tabs"
    where = f" at line {line}, column {column}" if line else ""
    return InvalidInputError(f"{source} is not valid YAML{where}: {why}")


def _type_name(value: Any) -> str:
    """How YAML calls a value's type, for messages about the user's own file."""
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def _check_shape(doc: dict[str, Any], source: str) -> None:
    """Catch the shape mistakes cloud-init would only log inside the guest, or that would make
    vmkit's own additions (users, runcmd, write_files) fail to merge."""
    for key in ("runcmd", "packages", "write_files", "users", "ssh_authorized_keys"):
        if key in doc and not isinstance(doc[key], list):
            raise InvalidInputError(
                f"{source}: {key!r} must be a list (one '- ' item a line), not "
                f"{_type_name(doc[key])}"
            )
    for i, entry in enumerate(doc.get("write_files", []), 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InvalidInputError(
                f"{source}: write_files item {i} must be a mapping with a 'path' (and usually "
                f"'content'), e.g. '- path: /etc/motd'"
            )
    for i, entry in enumerate(doc.get("users", []), 1):
        if not (isinstance(entry, str) or (isinstance(entry, dict) and "name" in entry)):
            raise InvalidInputError(
                f"{source}: users item {i} must be a user name or a mapping with a 'name'"
            )


def read_user_data(text: str, source: str) -> dict[str, Any]:
    """The user's cloud-config document, parsed and checked. Only cloud-config is taken (not
    shell scripts or MIME archives) because vmkit merges its own user and settings into it."""
    text = text.removeprefix("\ufeff")  # a BOM some Windows editors write
    first = text.split("\n", 1)[0].rstrip()
    if first != USER_DATA_HEADER:
        script = " (it looks like a shell script)" if first.startswith("#!") else ""
        raise InvalidInputError(
            f"{source} is not cloud-config{script}: its first line must be exactly "
            f"'{USER_DATA_HEADER}'; put shell commands in its 'runcmd' list"
        )
    try:
        doc = yaml.safe_load(text)  # the header is a YAML comment: line numbers stay the file's
    except yaml.YAMLError as err:
        raise _yaml_error(err, text, source) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidInputError(
            f"{source} must be a mapping of cloud-config keys (e.g. 'packages:', 'runcmd:') "
            f"at the top level, not {_type_name(doc)}"
        )
    _check_shape(doc, source)
    return doc


# --- environment ----------------------------------------------------------------------------


def parse_env(items: list[str]) -> dict[str, str]:
    """'-e KEY=VALUE' options -> {KEY: VALUE}; the last of a repeated KEY wins, as in docker.
    Keys are checked because they become shell variable names in the guest."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"invalid -e {item!r}: use -e KEY=VALUE (VALUE may be empty)")
        if not _ENV_KEY_RE.fullmatch(key):
            raise InvalidInputError(
                f"invalid variable name {key!r} in -e: use letters, digits and '_', not "
                f"starting with a digit"
            )
        if "\n" in value or "\0" in value:  # the value is not echoed: it may be a secret
            raise InvalidInputError(
                f"the value of -e {key} contains a newline or NUL byte: give a single line"
            )
        env[key] = value
    return env

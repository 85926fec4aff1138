"""The cloud-init NoCloud seed: the small ISO that tells a cloud image who it is on first boot.

cloud-init looks for a filesystem labelled 'cidata' and reads 'user-data' (what to do) and
'meta-data' (instance id and hostname) from it. vmkit writes that ISO itself with pycdlib, so
no genisoimage or cloud-localds is needed on the host, and the user's inputs were checked
before (spec/cloud.py).
"""

from __future__ import annotations

import copy
import io
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pycdlib
import yaml

from ..errors import InvalidInputError
from ..spec import validate_name
from ..spec.cloud import USER_DATA_HEADER, DEFAULT_USER, ENV_FILE, SUDO_ALL

# --- the merged config and the ISO ----------------------------------------------------------


def _user_names(users: list[Any]) -> set[str]:
    return {u if isinstance(u, str) else str(u.get("name")) for u in users}


def _vmkit_user(ssh_keys: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {
        "name": DEFAULT_USER,
        "sudo": SUDO_ALL,
        "shell": "/bin/bash",
        "groups": ["sudo"],
        "lock_passwd": True,  # SSH keys only: no password to guess or leak
    }
    if ssh_keys:
        user["ssh_authorized_keys"] = ssh_keys.split("\n")
    return user


def _env_script(env: dict[str, str]) -> str:
    lines = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    return "# Written by vmkit: the variables given with -e.\n" + "\n".join(lines) + "\n"


def cloud_config(hostname: str, ssh_keys: str | None, user_data: dict[str, Any] | None,
                 env: dict[str, str]) -> dict[str, Any]:
    """The cloud-config vmkit hands the guest: the user's document with vmkit's login user and
    environment added, and nothing the user wrote changed. ``hostname`` is only checked here:
    it reaches the guest through meta-data (build_seed), the way cloud-init expects it."""
    validate_name(hostname)
    config = copy.deepcopy(user_data) if user_data else {}
    # vmkit's user takes the place of the image's default one (also named 'debian' on Debian,
    # and listing both makes cloud-init skip the second). A user's own entry for it is kept
    # and gets the keys. New lists throughout: a YAML alias may share a list with another key.
    users = [dict(u) if isinstance(u, dict) else u for u in config.get("users", [])]
    own = next((u for u in users if isinstance(u, dict) and u.get("name") == DEFAULT_USER), None)
    if own is not None and ssh_keys:
        own["ssh_authorized_keys"] = [*own.get("ssh_authorized_keys", []),
                                      *ssh_keys.split("\n")]
    elif DEFAULT_USER not in _user_names(users):
        users.append(_vmkit_user(ssh_keys))
    config["users"] = users
    config.setdefault("preserve_hostname", False)  # let meta-data's local-hostname apply
    if env:
        env_file = {"path": ENV_FILE, "permissions": "0644", "owner": "root:root",
                    "content": _env_script(env)}
        config["write_files"] = [*config.get("write_files", []), env_file]
        # cloud-init runs all of runcmd as one /bin/sh script, so variables exported by the
        # first entry are seen by every command after it. write_files runs in an earlier
        # stage (init), so the file is there by then.
        if "runcmd" in config:
            config["runcmd"] = [f"set -a; . {ENV_FILE}; set +a", *config["runcmd"]]
    return config


class _Dumper(yaml.SafeDumper):
    """safe_dump, with multi-line strings (scripts, file contents) as '|' blocks, so the
    user-data stays readable when debugged in the guest (/var/lib/cloud/instance)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # PyYAML falls back to quotes where '|' can't be
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _iso(files: dict[str, bytes]) -> pycdlib.PyCdlib:
    """An ISO9660 image with Joliet and Rock Ridge names (Linux reads the Rock Ridge ones).
    pycdlib stamps the volume and every record with the current time (time.time(), no
    SOURCE_DATE_EPOCH), so two seeds of the same inputs differ in those bytes only."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="cidata", joliet=3, rock_ridge="1.09")
    for name, data in files.items():
        short = name.replace("-", "").upper()[:8]  # plain ISO9660 allows A-Z, 0-9, _ only
        iso.add_fp(io.BytesIO(data), len(data), f"/{short}.;1", rr_name=name,
                   joliet_path=f"/{name}", file_mode=0o100444)
    return iso


def build_seed(path: Path, instance_id: str, hostname: str, config: dict[str, Any]) -> None:
    """Write the NoCloud seed ISO (label 'cidata') for ``config`` at ``path``, atomically: a
    VM started meanwhile sees the old seed or the new one, never half of one. No
    network-config is written: the image configures its own networking."""
    validate_name(hostname)
    if not instance_id or "\n" in instance_id:
        raise InvalidInputError(f"invalid instance id {instance_id!r}: give one line of text")
    user_data = yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                          width=1 << 16)  # long lines (SSH keys) unfolded
    meta_data = yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname},
                               sort_keys=False)
    iso = _iso({
        "user-data": f"{USER_DATA_HEADER}\n{user_data}".encode(),
        "meta-data": meta_data.encode(),
    })
    # mkstemp makes the file 0600: the seed may hold the user's secrets (-e values).
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        iso.close()

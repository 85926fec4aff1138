"""The NoCloud seed: input checks (SSH keys, user data, -e), the merged cloud-config, the ISO."""

from __future__ import annotations

import base64
import io
import os
import struct
from pathlib import Path
from typing import Any

import pycdlib
import pytest
import yaml

from vmkit.errors import InvalidInputError
from vmkit.images.seed import build_seed, cloud_config
from vmkit.spec.cloud import DEFAULT_USER, parse_env, read_ssh_key, read_user_data

# Made once with ssh-keygen (-t ed25519, -t ecdsa -b 256, -t rsa -b 1024); only the public
# halves are kept.
ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILZNoRTRnxeSyDYuyNjP9G21oceSL827bYxRQimFqkzE "
           "alice@laptop")
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLqy0nAMbSv"
         "VnX0zDVeSZughk2j0uMSGyKrE67RhUjfET+YJuIc0AHn7F+Xd4eoJFboThF3DbNtvx5YYDn2/LUk= bob")
RSA = ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQD6FFhc7CtdB/7Jmj3NcoroAb+PprtQjzfMVNfS3i0j94hv/Rad"
       "kQ2/YjDBZ4i+SZevDBVHWs36iyzhs4zKzaZhMFnnzigokwrXExlQd2XKStLlyxoHdz4HRS3bFoMOS3v7Dqonc/vs"
       "Vhxm2XdNg1lFfWBkSbe9EjeJoG92SgL5rQ== carol")
PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n" \
          "-----END OPENSSH PRIVATE KEY-----\n"


def _key(kind: str, *fields: bytes) -> str:
    """A public key line whose blob holds ``fields`` (the type name first, as ssh writes it)."""
    blob = b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return f"{kind} {base64.b64encode(blob).decode()}"


def _message(fn: Any, *args: Any) -> str:
    with pytest.raises(InvalidInputError) as err:
        fn(*args)
    return err.value.message


# --- SSH keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ED25519, ECDSA, RSA])
def test_real_keys_are_accepted(key: str) -> None:
    assert read_ssh_key(key + "\n", "id.pub") == key


def test_security_key_types_are_accepted() -> None:
    sk = _key("sk-ssh-ed25519@openssh.com", b"sk-ssh-ed25519@openssh.com", b"k" * 32, b"ssh:")
    ecdsa_sk = _key("sk-ecdsa-sha2-nistp256@openssh.com", b"sk-ecdsa-sha2-nistp256@openssh.com",
                    b"nistp256", b"\x04" + b"p" * 64, b"ssh:")
    assert read_ssh_key(f"{sk}\n{ecdsa_sk}", "keys") == f"{sk}\n{ecdsa_sk}"


def test_several_keys_comments_and_blank_lines() -> None:
    text = f"# my keys\n\n  {ED25519}  \n{RSA}\r\n\n"
    assert read_ssh_key(text, "keys").split("\n") == [ED25519, RSA]


def test_key_without_comment_and_tabs_normalised() -> None:
    kind, data, _ = ED25519.split()
    assert read_ssh_key(f"{kind}\t{data}", "k") == f"{kind} {data}"


def test_private_key_is_named_as_such() -> None:
    msg = _message(read_ssh_key, PRIVATE, "~/.ssh/id_ed25519")
    assert msg == "~/.ssh/id_ed25519 is a private key; give the public one (~/.ssh/id_ed25519.pub)"
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
    assert "is a private key" in _message(read_ssh_key, pem, "key.pem")


def test_truncated_base64_is_rejected() -> None:
    msg = _message(read_ssh_key, ED25519.split()[0] + " " + ED25519.split()[1][:-3], "id.pub")
    assert "id.pub is not an OpenSSH public key" in msg
    assert "damaged" in msg and "~/.ssh/id_ed25519.pub" in msg


def test_blob_cut_short_but_valid_base64_is_rejected() -> None:
    blob = base64.b64decode(ED25519.split()[1])[:-8]  # still decodes; the key is 24 bytes short
    line = f"ssh-ed25519 {base64.b64encode(blob).decode()}"
    assert "damaged" in _message(read_ssh_key, line, "id.pub")


def test_blob_type_must_match_label() -> None:
    lying = "ssh-rsa " + ED25519.split()[1]
    msg = _message(read_ssh_key, lying, "id.pub")
    assert "'ssh-rsa'" in msg and "'ssh-ed25519'" in msg


@pytest.mark.parametrize("text", [
    "ssh-dss AAAAB3NzaC1kc3MAAACBAP8=",  # DSA: not accepted any more
    "ssh-ed25519",
    "ssh-ed25519 not*base64",
    "hello world",
    "---- BEGIN SSH2 PUBLIC KEY ----\nAAAAC3NzaC1lZDI1NTE5\n---- END SSH2 PUBLIC KEY ----",
])
def test_not_a_public_key(text: str) -> None:
    msg = _message(read_ssh_key, text, "key.txt")
    assert msg.startswith("key.txt is not an OpenSSH public key")
    assert "~/.ssh/id_ed25519.pub" in msg


def test_every_line_must_be_a_key() -> None:
    msg = _message(read_ssh_key, f"{ED25519}\nnonsense here\n", "keys")
    assert "line 2" in msg


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_no_key_at_all(text: str) -> None:
    assert "holds no SSH public key" in _message(read_ssh_key, text, "empty.pub")


# --- user data ------------------------------------------------------------------------------


def test_user_data_parsed() -> None:
    doc = read_user_data("#cloud-config\npackages: [vim]\nruncmd:\n  - echo hi\n", "ud")
    assert doc == {"packages": ["vim"], "runcmd": ["echo hi"]}


@pytest.mark.parametrize("text", ["#cloud-config\n", "#cloud-config", "#cloud-config\n# nothing\n"])
def test_empty_user_data_is_an_empty_mapping(text: str) -> None:
    assert read_user_data(text, "ud") == {}


def test_windows_line_endings_and_bom_accepted() -> None:
    assert read_user_data("\ufeff#cloud-config\r\nruncmd:\r\n  - a\r\n", "ud") == {"runcmd": ["a"]}


@pytest.mark.parametrize("text", ["packages: [vim]\n", "#cloud-config-archive\n- a\n",
                                  "# cloud-config\n", "\n#cloud-config\n"])
def test_header_is_required(text: str) -> None:
    msg = _message(read_user_data, text, "ud.yaml")
    assert "ud.yaml is not cloud-config" in msg and "'#cloud-config'" in msg and "runcmd" in msg


def test_shell_script_is_pointed_to_runcmd() -> None:
    msg = _message(read_user_data, "#!/bin/sh\napt-get install -y vim\n", "setup.sh")
    assert "shell script" in msg and "runcmd" in msg


def test_tab_on_line_3_is_reported_there() -> None:
    msg = _message(read_user_data, "#cloud-config\npackages:\n\t- vim\n", "ud.yaml")
    assert "ud.yaml" in msg and "line 3, column 1" in msg and "tabs" in msg


def test_bad_indentation_is_reported_on_its_line() -> None:
    text = "#cloud-config\nruncmd:\n  - echo a\n bad: indent\npackages: []\n"
    assert "line 4" in _message(read_user_data, text, "ud.yaml")


def test_unclosed_bracket_names_the_line() -> None:
    text = "#cloud-config\npackages: [vim,\n  git\n"
    msg = _message(read_user_data, text, "ud.yaml")
    assert "ud.yaml is not valid YAML at line 4" in msg


def test_control_character_names_the_line() -> None:
    msg = _message(read_user_data, "#cloud-config\na: 1\nb: x\x07\n", "ud.yaml")
    assert "line 3, column 5" in msg and "#x07" in msg


@pytest.mark.parametrize("text,kind", [("#cloud-config\n- a\n- b\n", "a list"),
                                       ("#cloud-config\njust text\n", "a string")])
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    msg = _message(read_user_data, text, "ud.yaml")
    assert "must be a mapping" in msg and msg.endswith(f"not {kind}")


@pytest.mark.parametrize("key,value,kind", [
    ("runcmd", "echo hi", "a string"),
    ("runcmd", "", "an empty value"),
    ("packages", "vim", "a string"),
    ("write_files", "{path: /x}", "a mapping"),
    ("users", "alice", "a string"),
    ("ssh_authorized_keys", "ssh-ed25519 AAAA", "a string"),
])
def test_known_keys_must_be_lists(key: str, value: str, kind: str) -> None:
    msg = _message(read_user_data, f"#cloud-config\n{key}: {value}\n", "ud.yaml")
    assert f"'{key}' must be a list" in msg and msg.endswith(f"not {kind}")


@pytest.mark.parametrize("item", ["- content: hi", "- /etc/motd", "- {path: 3}"])
def test_write_files_items_need_a_path(item: str) -> None:
    msg = _message(read_user_data, f"#cloud-config\nwrite_files:\n  {item}\n", "ud.yaml")
    assert "write_files item 1" in msg and "'path'" in msg


def test_users_items_need_a_name() -> None:
    text = "#cloud-config\nusers:\n  - default\n  - {sudo: ALL}\n"
    assert "users item 2" in _message(read_user_data, text, "ud.yaml")


# --- -e KEY=VALUE ---------------------------------------------------------------------------


def test_parse_env() -> None:
    assert parse_env(["A=1", "_b2=x=y", "EMPTY=", "A=2", "SP=a b 'c'"]) == {
        "A": "2", "_b2": "x=y", "EMPTY": "", "SP": "a b 'c'"}
    assert parse_env([]) == {}


@pytest.mark.parametrize("item,words", [
    ("NOEQUALS", "KEY=VALUE"),
    ("=value", "variable name"),
    ("1ABC=x", "variable name"),
    ("A-B=x", "variable name"),
    ("A B=x", "variable name"),
    ("A=line1\nline2", "newline"),
    ("A=nul\0", "NUL"),
])
def test_parse_env_rejects(item: str, words: str) -> None:
    assert words in _message(parse_env, [item])


def test_parse_env_does_not_echo_a_bad_value() -> None:
    assert "s3cret" not in _message(parse_env, ["TOKEN=s3cret\n"])


# --- the merged cloud-config ----------------------------------------------------------------


def _vmkit_user(config: dict[str, Any]) -> dict[str, Any]:
    (user,) = [u for u in config["users"] if isinstance(u, dict) and u["name"] == DEFAULT_USER]
    return user


def test_cloud_config_without_user_data() -> None:
    config = cloud_config("vm1", f"{ED25519}\n{RSA}", None, {})
    assert len(config["users"]) == 1  # vmkit's user replaces the image's default one
    assert _vmkit_user(config) == {
        "name": "debian", "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash",
        "groups": ["sudo"], "lock_passwd": True, "ssh_authorized_keys": [ED25519, RSA]}
    assert config["preserve_hostname"] is False
    assert "hostname" not in config and "fqdn" not in config
    assert "write_files" not in config and "runcmd" not in config


def test_cloud_config_keeps_the_users_and_appends_vmkits() -> None:
    user_data = {"users": ["default", {"name": "alice", "groups": ["adm"]}],
                 "packages": ["vim"], "preserve_hostname": True}
    config = cloud_config("vm1", ED25519, user_data, {})
    assert config["users"][:2] == user_data["users"]
    assert _vmkit_user(config)["ssh_authorized_keys"] == [ED25519]
    assert config["packages"] == ["vim"] and config["preserve_hostname"] is True
    assert user_data["users"] == ["default", {"name": "alice", "groups": ["adm"]}]  # not mutated


def test_cloud_config_keeps_the_users_own_entry_for_its_user_and_adds_the_keys() -> None:
    mine = {"name": DEFAULT_USER, "shell": "/bin/zsh"}
    config = cloud_config("vm1", ED25519, {"users": [mine]}, {})
    assert config["users"] == [{**mine, "ssh_authorized_keys": [ED25519]}]
    assert mine == {"name": DEFAULT_USER, "shell": "/bin/zsh"}  # not mutated


def test_cloud_config_without_keys_has_no_key_list() -> None:
    assert "ssh_authorized_keys" not in _vmkit_user(cloud_config("vm1", None, {}, {}))


def test_env_goes_to_profile_d_and_runs_before_runcmd() -> None:
    user_data = {"runcmd": ["echo $GREETING", ["ls", "-l"]],
                 "write_files": [{"path": "/etc/motd", "content": "hi\n"}]}
    config = cloud_config("vm1", None, user_data, {"GREETING": "hello world", "Q": "it's"})
    assert config["runcmd"] == ["set -a; . /etc/profile.d/vmkit-env.sh; set +a",
                                "echo $GREETING", ["ls", "-l"]]
    motd, env_file = config["write_files"]
    assert motd == {"path": "/etc/motd", "content": "hi\n"}
    assert env_file["path"] == "/etc/profile.d/vmkit-env.sh"
    assert env_file["permissions"] == "0644"
    exports = [line for line in env_file["content"].splitlines() if not line.startswith("#")]
    assert exports == ["export GREETING='hello world'", "export Q='it'\"'\"'s'"]
    assert user_data["runcmd"] == ["echo $GREETING", ["ls", "-l"]]  # not mutated


def test_env_does_not_reach_a_list_shared_by_an_alias() -> None:
    user_data = read_user_data("#cloud-config\nsteps: &steps [make]\nruncmd: *steps\n", "ud")
    config = cloud_config("vm1", None, user_data, {"A": "1"})
    assert config["steps"] == ["make"] and config["runcmd"][1:] == ["make"]


def test_env_without_runcmd_adds_no_runcmd() -> None:
    config = cloud_config("vm1", None, None, {"A": "1"})
    assert "runcmd" not in config
    assert [f["path"] for f in config["write_files"]] == ["/etc/profile.d/vmkit-env.sh"]


def test_env_file_is_valid_shell(tmp_path: Path) -> None:
    """The exported values come back byte for byte when a shell sources the file."""
    import subprocess

    env = {"A": "plain", "B": "with space", "C": "quote ' and \" and $HOME `x`", "D": ""}
    content = cloud_config("vm1", None, None, env)["write_files"][0]["content"]
    script = tmp_path / "env.sh"
    script.write_text(content)
    out = subprocess.run(["sh", "-c", f". {script}; printf '%s\\0' \"$A\" \"$B\" \"$C\" \"$D\""],
                         capture_output=True, check=True, env={"PATH": os.environ["PATH"]})
    assert out.stdout.split(b"\0")[:-1] == [v.encode() for v in env.values()]


def test_cloud_config_checks_the_hostname() -> None:
    with pytest.raises(InvalidInputError):
        cloud_config("bad_host!", None, None, {})


# --- the ISO --------------------------------------------------------------------------------


def _read_iso(path: Path) -> tuple[pycdlib.PyCdlib, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    files = {}
    for name in ("user-data", "meta-data"):
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        files[name] = out.getvalue()
        joliet = io.BytesIO()
        iso.get_file_from_iso_fp(joliet, joliet_path=f"/{name}")
        assert joliet.getvalue() == files[name]
    return iso, files


def test_build_seed_round_trips(tmp_path: Path) -> None:
    user_data = read_user_data(
        "#cloud-config\nruncmd:\n  - echo $X\n  - |\n    multi\n    line\n"
        "write_files:\n  - path: /etc/motd\n    content: \"Grüße\\n\"\n", "ud")
    config = cloud_config("vm1", ED25519, user_data, {"X": "1"})
    seed = tmp_path / "seed.iso"
    build_seed(seed, "vm1-0001", "vm1", config)

    iso, files = _read_iso(seed)
    try:
        assert iso.pvd.volume_identifier.rstrip() == b"cidata"
        names = {r.rock_ridge.name() for r in iso.list_children(rr_path="/")
                 if r.rock_ridge is not None}
        assert names >= {b"user-data", b"meta-data"} and b"network-config" not in names
    finally:
        iso.close()
    assert files["user-data"].startswith(b"#cloud-config\n")
    assert ED25519.encode() in files["user-data"]  # on one line, readable in the guest
    assert yaml.safe_load(files["user-data"]) == config
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": "vm1-0001",
                                                  "local-hostname": "vm1"}
    assert seed.stat().st_mode & 0o777 == 0o600  # it may hold -e secrets
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]  # no temporary file left


def test_build_seed_replaces_an_old_seed(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    seed.write_bytes(b"old")
    build_seed(seed, "i-2", "vm2", cloud_config("vm2", None, None, {}))
    _, files = _read_iso(seed)
    assert yaml.safe_load(files["meta-data"])["instance-id"] == "i-2"


def test_build_seed_failure_leaves_the_old_seed(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self: pycdlib.PyCdlib, out: Any, *args: Any, **kwargs: Any) -> None:
        out.write(b"half an ISO")
        raise OSError(28, "No space left on device")

    seed = tmp_path / "seed.iso"
    seed.write_bytes(b"old")
    monkeypatch.setattr(pycdlib.PyCdlib, "write_fp", disk_full)
    with pytest.raises(OSError):
        build_seed(seed, "i-3", "vm3", {})
    assert seed.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]


@pytest.mark.parametrize("instance_id,hostname", [("", "vm1"), ("a\nb", "vm1"), ("i", "x_y")])
def test_build_seed_checks_its_arguments(tmp_path: Path, instance_id: str, hostname: str) -> None:
    with pytest.raises(InvalidInputError):
        build_seed(tmp_path / "seed.iso", instance_id, hostname, {})
    assert not list(tmp_path.iterdir())

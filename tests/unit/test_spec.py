"""spec.py: sizes, port forwards, names and make_spec's range checks."""

from __future__ import annotations

import json

import pytest

from vmkit.errors import InvalidInputError
from vmkit.spec import (MAX_MEMORY_MIB, PortForward, VmSpec, format_size, make_spec,
                        parse_port, parse_size, resized, validate_name, with_ports)

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


# --- parse_size / format_size -------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("1k", KiB), ("1K", KiB), ("4KiB", 4 * KiB), ("4kb", 4 * KiB),
    ("256M", 256 * MiB), ("256m", 256 * MiB), ("256MiB", 256 * MiB), ("256MB", 256 * MiB),
    ("2G", 2 * GiB), ("2GiB", 2 * GiB), ("2gb", 2 * GiB),
    ("1T", TiB), ("1TiB", TiB),
    ("1.5G", 3 * GiB // 2), ("1.5GiB", 3 * GiB // 2), ("0.5M", MiB // 2),
    ("512", 512 * MiB),  # no unit: MiB, like QEMU's -m
    (" 64 M ", 64 * MiB),
])
def test_parse_size_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_int_is_mib() -> None:
    assert parse_size(512) == 512 * MiB


@pytest.mark.parametrize("text", ["lots", "", "M", "1X", "-1", "1e3", "1.2.3G", "1 G B"])
def test_parse_size_garbage(text: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_size(text, "memory")
    msg = exc.value.message
    assert "memory" in msg and repr(text) in msg
    assert "512M" in msg  # shows an example of what works


def test_parse_size_huge_number_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        parse_size("9" * 400)


@pytest.mark.parametrize("n, expected", [
    (0, "0B"), (512, "512B"), (KiB, "1K"), (1536, "1.5K"), (256 * MiB, "256M"),
    (3 * GiB // 2, "1536M"), (3 * GiB // 2 + 1, "1.5G"),
    (2 * GiB, "2G"), (TiB, "1T"), (1024 * TiB, "1024T"),
])
def test_format_size(n: int, expected: str) -> None:
    assert format_size(n) == expected


@pytest.mark.parametrize("text", ["64M", "256M", "1G", "3G", "16T", "4K"])
def test_format_size_round_trips_through_parse_size(text: str) -> None:
    assert format_size(parse_size(text)) == text


# --- parse_port --------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("8080:80", PortForward(8080, 80, "127.0.0.1", "tcp")),
    ("8080:80/tcp", PortForward(8080, 80, "127.0.0.1", "tcp")),
    ("5353:53/udp", PortForward(5353, 53, "127.0.0.1", "udp")),
    ("0.0.0.0:8080:80", PortForward(8080, 80, "0.0.0.0", "tcp")),
    ("[::1]:2222:22", PortForward(2222, 22, "::1", "tcp")),
    ("[::]:2222:22/udp", PortForward(2222, 22, "::", "udp")),
    ("1:65535", PortForward(1, 65535, "127.0.0.1", "tcp")),
])
def test_parse_port(spec: str, expected: PortForward) -> None:
    assert parse_port(spec) == expected


def test_port_forward_str() -> None:
    assert str(parse_port("5353:53/udp")) == "127.0.0.1:5353->53/udp"
    assert str(parse_port("[::1]:2222:22")) == "[::1]:2222->22/tcp"


@pytest.mark.parametrize("spec, words", [
    ("8080:80/sctp", ["protocol", "'sctp'"]),
    ("8080:80/TCP", ["protocol"]),
    ("0:80", ["port '0'", "1-65535"]),
    ("8080:65536", ["port '65536'", "1-65535"]),
    ("a:80", ["port 'a'"]),
    ("8080:", ["port ''"]),
    ("8080", ["[ADDR:]HOSTPORT:GUESTPORT"]),
    ("localhost:8080:80", ["address 'localhost'"]),
    ("300.1.1.1:8080:80", ["address '300.1.1.1'"]),
    ("[nope]:8080:80", ["address 'nope'"]),
])
def test_parse_port_rejects(spec: str, words: list[str]) -> None:
    with pytest.raises(InvalidInputError) as exc:
        parse_port(spec)
    assert repr(spec) in exc.value.message
    for w in words:
        assert w in exc.value.message


def test_parse_port_non_ascii_digit_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        parse_port("8080:²")


# --- validate_name -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "web", "web-1", "A9", "1", "a" * 63, "a-b-c"])
def test_validate_name_accepts(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["a/b", "a.b", "", "-a", "a-", "a" * 64, "..", "a b", "ä", "a_b"])
def test_validate_name_rejects(name: str) -> None:
    with pytest.raises(InvalidInputError) as exc:
        validate_name(name)
    assert repr(name) in exc.value.message
    assert "1-63" in exc.value.message


def test_validate_name_says_what() -> None:
    with pytest.raises(InvalidInputError, match="invalid image name"):
        validate_name("a.b", "image")


def test_validate_name_shortens_a_very_long_name() -> None:
    with pytest.raises(InvalidInputError) as exc:
        validate_name("s" * 300, "snapshot")
    assert exc.value.message.startswith(f"invalid snapshot name {'s' * 24!r}... (300 characters)")
    assert len(exc.value.message) < 200


def test_validate_name_rejects_trailing_newline() -> None:
    with pytest.raises(InvalidInputError):
        validate_name("web\n")


# --- make_spec ---------------------------------------------------------------------------

def test_make_spec_defaults() -> None:
    assert make_spec("web") == VmSpec("web", "tiny", 1, 256, None, (), "nat", False)


def test_make_spec_all_fields() -> None:
    spec = make_spec("web", "tiny", 4, "1G", "10G", ["8080:80", "5353:53/udp"], "restricted", True)
    assert spec == VmSpec("web", "tiny", 4, 1024, 10 * GiB,
                          (PortForward(8080, 80), PortForward(5353, 53, proto="udp")),
                          "restricted", True)


def test_make_spec_validates_names() -> None:
    with pytest.raises(InvalidInputError, match="invalid VM name"):
        make_spec("a.b")
    with pytest.raises(InvalidInputError, match="invalid image name"):
        make_spec("web", image="../x")


@pytest.mark.parametrize("cpus", [1, 2, 64])
def test_make_spec_cpus_in_range(cpus: int) -> None:
    assert make_spec("web", cpus=cpus).cpus == cpus


@pytest.mark.parametrize("cpus", [0, -1, 65])
def test_make_spec_cpus_out_of_range(cpus: int) -> None:
    with pytest.raises(InvalidInputError, match=rf"cpus {cpus} is out of range: use 1-64"):
        make_spec("web", cpus=cpus)


@pytest.mark.parametrize("memory, mib", [("64M", 64), (64, 64), ("1T", MAX_MEMORY_MIB),
                                         ("1.5G", 1536)])
def test_make_spec_memory_in_range(memory: str | int, mib: int) -> None:
    assert make_spec("web", memory=memory).memory_mib == mib


@pytest.mark.parametrize("memory, expected", [
    ("63M", "memory 63M is too little: a VM needs at least 64M"),
    ("0", "memory 0 is too little: a VM needs at least 64M"),
    ("1025G", r"memory 1025G is more than vmkit gives a VM \(1T\)"),
    ("2T", r"memory 2T is more than vmkit gives a VM \(1T\)"),
])
def test_make_spec_memory_out_of_range(memory: str, expected: str) -> None:
    with pytest.raises(InvalidInputError, match=expected):
        make_spec("web", memory=memory)
    # The same message whether or not the host's size is known (CLI and daemon agree).
    with pytest.raises(InvalidInputError, match=expected):
        make_spec("web", memory=memory, host_memory_mib=4096)


def test_make_spec_memory_capped_by_host() -> None:
    assert make_spec("web", memory="2G", host_memory_mib=2048).memory_mib == 2048
    with pytest.raises(InvalidInputError, match=r"2049M is more than this host has \(2G\)"):
        make_spec("web", memory="2049M", host_memory_mib=2048)
    with pytest.raises(InvalidInputError, match=r"more than this host has \(1536M\)"):
        make_spec("web", memory="2G", host_memory_mib=1536)


def test_make_spec_memory_garbage() -> None:
    with pytest.raises(InvalidInputError, match="cannot read memory 'lots'"):
        make_spec("web", memory="lots")


@pytest.mark.parametrize("disk, size", [("1M", MiB), ("10G", 10 * GiB), ("16T", 16 * TiB)])
def test_make_spec_disk_in_range(disk: str, size: int) -> None:
    assert make_spec("web", disk=disk).disk_bytes == size


@pytest.mark.parametrize("disk", ["1K", "0.5M", "17T"])
def test_make_spec_disk_out_of_range(disk: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"disk {disk} is out of range"):
        make_spec("web", disk=disk)


def test_make_spec_disk_garbage() -> None:
    with pytest.raises(InvalidInputError, match="cannot read disk size 'big'"):
        make_spec("web", disk="big")


def test_make_spec_private_networks() -> None:
    spec = make_spec("web", network=["lab", "nat", "dmz"], ports=["8080:80"])
    assert (spec.network, spec.more_networks) == ("lab", ("nat", "dmz"))
    assert spec.attachments() == ("lab", "nat", "dmz")
    assert make_spec("web", network="none").attachments() == ()
    for bad, why in ((["lab", "none"], "no NIC at all"), (["nat", "restricted"], "at most one"),
                     (["bad name"], "invalid network name"), (["lab"] * 9, "at most 8")):
        with pytest.raises(InvalidInputError, match=why):
            make_spec("web", network=bad)
    with pytest.raises(InvalidInputError, match="user-mode NIC"):
        make_spec("web", network="lab", ports=["8080:80"])


@pytest.mark.parametrize("network", ["nat", "restricted", "none"])
def test_make_spec_networks(network: str) -> None:
    assert make_spec("web", network=network).network == network


def test_make_spec_ports_need_a_network() -> None:
    with pytest.raises(InvalidInputError, match="port forwards need a user-mode NIC"):
        make_spec("web", ports=["8080:80"], network="none")


def test_make_spec_ports_allowed_on_restricted() -> None:
    assert make_spec("web", ports=["8080:80"], network="restricted").ports == (
        PortForward(8080, 80),)


@pytest.mark.parametrize("ports", [
    ["8080:80", "8080:81"],
    ["8080:80", "127.0.0.1:8080:22"],  # the default address is 127.0.0.1
    ["5353:53/udp", "5353:54/udp"],
])
def test_make_spec_duplicate_host_port(ports: list[str]) -> None:
    with pytest.raises(InvalidInputError, match="is forwarded twice"):
        make_spec("web", ports=ports)


@pytest.mark.parametrize("ports", [
    ["8080:80", "8080:80/udp"],  # tcp and udp are separate ports
    ["127.0.0.1:8080:80", "127.0.0.2:8080:80"],  # different addresses
])
def test_make_spec_same_port_distinct_forwards(ports: list[str]) -> None:
    assert len(make_spec("web", ports=ports).ports) == 2


def test_make_spec_bad_port_is_reported() -> None:
    with pytest.raises(InvalidInputError, match="invalid port '0'"):
        make_spec("web", ports=["0:80"])


# --- VmSpec JSON -------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    make_spec("web"),
    make_spec("db", "tiny", 8, "4G", "20G", ["0.0.0.0:5432:5432", "[::1]:53:53/udp"],
              "restricted", True),
    make_spec("quiet", network="none"),
])
def test_vmspec_json_round_trip(spec: VmSpec) -> None:
    data = json.loads(json.dumps(spec.to_json()))  # as stored in the database
    back = VmSpec.from_json(data)
    assert back == spec
    assert all(isinstance(p, PortForward) for p in back.ports)
    assert isinstance(back.ports, tuple)


def test_vmspec_to_json_shape() -> None:
    data = make_spec("web", ports=["8080:80"]).to_json()
    assert list(data["ports"]) == [{"host_port": 8080, "guest_port": 80, "host_addr": "127.0.0.1",
                              "proto": "tcp"}]
    assert data["memory_mib"] == 256 and data["disk_bytes"] is None


@pytest.mark.parametrize("text,expected", [
    ("300iops", (300, None)), ("20M", (None, 20 << 20)), ("300iops,20M", (300, 20 << 20)),
    ("1G/s", (None, 1 << 30))])
def test_io_limits(text: str, expected: tuple[int | None, int | None]) -> None:
    from vmkit.spec import parse_io_limit

    assert parse_io_limit(text) == expected


@pytest.mark.parametrize("text", ["fast", "0iops", "xiops", ",", "300iops,1K"])
def test_bad_io_limits(text: str) -> None:
    from vmkit.spec import parse_io_limit

    with pytest.raises(InvalidInputError, match="I/O limit"):
        parse_io_limit(text)


def test_a_spec_from_elsewhere_keeps_its_io_limits() -> None:
    from vmkit.spec import check_spec

    spec = make_spec("web", io_limit="300iops,20M")
    assert check_spec(json.loads(json.dumps(spec.to_json()))) == spec


def test_resized_keeps_everything_else_and_validates_the_new_sizes() -> None:
    spec = make_spec("web", ports=["8080:80"], disk="2G", io_limit="300iops")
    new = resized(spec, 2, "1G", None)
    assert (new.cpus, new.memory_mib, new.disk_bytes) == (2, 1024, spec.disk_bytes)
    assert (new.ports, new.io_iops, new.network) == (spec.ports, 300, "nat")
    assert resized(spec, None, None, "8G").disk_bytes == 8 << 30
    with pytest.raises(InvalidInputError, match="cpus 0 is out of range"):
        resized(spec, 0, None, None)
    with pytest.raises(InvalidInputError, match="memory"):
        resized(spec, None, "1T", None, host_memory_mib=4096)


def test_a_blank_disk_needs_a_cd_and_a_size() -> None:
    for kwargs in ({}, {"cdrom": "installer"}, {"disk": "8G"}):
        with pytest.raises(InvalidInputError, match="--cdrom FILE.iso and --disk SIZE"):
            make_spec("inst", image=None, **kwargs)
    spec = make_spec("inst", image=None, cdrom="installer", disk="8G")
    assert spec.image is None and spec.cdrom == "installer" and spec.disk_bytes == 8 << 30


def test_firmware_and_provisioning_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="bios or uefi"):
        make_spec("vm", firmware="efi")
    with pytest.raises(InvalidInputError, match="line 3"):
        make_spec("vm", user_data="#cloud-config\nruncmd:\n\t- x\n")
    with pytest.raises(InvalidInputError, match="not an OpenSSH public key"):
        make_spec("vm", ssh_keys="hello")
    spec = make_spec("vm", env=["A=1", "B=x=y"])
    assert spec.env == {"A": "1", "B": "x=y"}
    assert VmSpec.from_json(spec.to_json()) == spec  # stored and read back whole


def test_with_ports_replaces_the_forwards_and_keeps_the_rest() -> None:
    spec = make_spec("web", cpus=2, ports=["8080:80"], network=["lab", "restricted"])
    moved = with_ports(spec, ["9090:80", "0.0.0.0:5353:53/udp"])
    assert moved.ports == (PortForward(9090, 80), PortForward(5353, 53, "0.0.0.0", "udp"))
    assert VmSpec.from_json({**moved.to_json(), "ports": spec.to_json()["ports"]}) == spec
    assert with_ports(spec, []).ports == ()
    with pytest.raises(InvalidInputError, match="forwarded twice"):
        with_ports(spec, ["9090:80", "9090:81"])
    with pytest.raises(InvalidInputError, match="user-mode NIC"):
        with_ports(make_spec("quiet", network="none"), ["9090:80"])

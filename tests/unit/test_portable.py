"""portable/: the tar stream, the vmkit bundle's checks and the OVF descriptor, without QEMU."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from vmkit.errors import InvalidInputError
from vmkit.formats import bundle, tarstream
from vmkit.services.portable import ova
from vmkit.services.portable.libvirt import domain_xml
from vmkit.spec import make_spec


def write(members: list[tarstream.Member], path: Path) -> bytes:
    data = b"".join(tarstream.chunks(members))
    path.write_bytes(data)
    return data


def test_the_stream_is_as_long_as_announced_and_tar_reads_it(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 5000)
    members = [tarstream.Member("a.json", data=b"{}"), tarstream.Member("big", tmp_path / "big")]
    data = write(members, tmp_path / "out.tar")
    assert len(data) == tarstream.length(members)
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert tar.getnames() == ["a.json", "big"]
        assert tar.extractfile("big").read() == b"x" * 5000  # type: ignore[union-attr]
    assert tarstream.is_tar(tmp_path / "out.tar")
    (tmp_path / "zeros").write_bytes(b"\0" * 4096)
    assert not tarstream.is_tar(tmp_path / "zeros")  # tarfile.is_tarfile says yes to this


def test_a_file_that_changes_while_streamed_fails_the_stream(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"y" * 100)
    member = tarstream.Member("f", tmp_path / "f")
    stream = tarstream.chunks([member])
    next(stream)  # the header, with 100 bytes announced
    (tmp_path / "f").write_bytes(b"y" * 50)
    with pytest.raises(OSError, match="changed"):
        list(stream)


def bundle_file(tmp_path: Path, extra: list[tarstream.Member] = ()) -> Path:  # type: ignore[assignment]
    (tmp_path / "disk").write_bytes(b"disk" * 1000)
    members = bundle.members({"vm": {}}, tmp_path / "disk", None) + list(extra)
    write(members, tmp_path / "b.vmkit")
    return tmp_path / "b.vmkit"


def test_a_bundle_unpacks_with_its_checksums(tmp_path: Path) -> None:
    path = bundle_file(tmp_path)
    assert bundle.manifest_of(path)["files"]["disk.qcow2"]["size"] == 4000  # type: ignore[index]
    (tmp_path / "out").mkdir()
    found = bundle.unpack(path, tmp_path / "out", "b.vmkit")
    assert found.disk.read_bytes() == b"disk" * 1000 and found.state is None


def test_a_bundle_with_a_member_it_does_not_list_is_refused(tmp_path: Path) -> None:
    path = bundle_file(tmp_path, [tarstream.Member("../../etc/evil", data=b"x")])
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidInputError, match="unexpected member"):
        bundle.unpack(path, tmp_path / "out", "b.vmkit")
    assert not (tmp_path / "etc").exists()


def test_a_manifest_from_a_newer_vmkit_is_named(tmp_path: Path) -> None:
    manifest = {"format": "vmkit-export", "version": 9, "files": {}}
    write([tarstream.Member("vmkit.json", data=json.dumps(manifest).encode())],
          tmp_path / "new.vmkit")
    with pytest.raises(InvalidInputError, match="version 9"):
        bundle.manifest_of(tmp_path / "new.vmkit")


def test_the_ovf_descriptor_reads_back() -> None:
    spec = make_spec("web", cpus=2, memory="512M")
    xml = ova.descriptor(spec, "web-disk1.vmdk", 1234, 1 << 30).encode()
    assert ova._read_descriptor(xml, "x") == ("web", 2, 512, "web-disk1.vmdk",
                                              ova.STREAM_OPTIMIZED)


@pytest.mark.parametrize("units,shift", [("byte * 2^20", 20), ("MegaBytes", 20),
                                         ("GigaBytes", 30), ("byte*2^30", 30)])
def test_ovf_memory_units(units: str, shift: int) -> None:
    assert ova._shift(units) == shift


def test_an_ovf_disk_reference_cannot_leave_the_archive() -> None:
    xml = ova.descriptor(make_spec("web"), "../escape.vmdk", 1, 1).encode()
    with pytest.raises(InvalidInputError, match="not a file in the OVA"):
        ova._read_descriptor(xml, "x")


def test_the_libvirt_domain_names_absolute_paths() -> None:
    paths = {k: Path(f"/srv/exp/{k}") for k in ("disk", "kernel", "initrd")}
    xml = domain_xml(make_spec("web", network="none"), paths, "tcg")
    import xml.etree.ElementTree as ET

    root = ET.parse(io.StringIO(xml)).getroot()
    assert root.get("type") == "qemu" and root.findtext("name") == "web"
    assert root.find("devices/disk/source").get("file") == "/srv/exp/disk"  # type: ignore[union-attr]
    assert root.find("devices/interface") is None  # --network none: no NIC
    assert "vmkit.hostname=web" in root.findtext("os/cmdline", "")

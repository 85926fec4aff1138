"""'vmkit daemon install': the systemd unit for vmkitd, and the ssh keys 'vmkit ssh' finds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vmkit.cli.daemon import unit_text


@pytest.mark.parametrize("system", [True, False])
def test_the_unit_runs_this_python_for_this_home_and_spares_the_vms(system: bool) -> None:
    text = unit_text("/opt/vm kit/bin/python3", Path("/srv/vm%s"), system)
    lines = text.splitlines()
    assert "ExecStart='/opt/vm kit/bin/python3' -m vmkit.daemon" in lines
    assert 'Environment="VMKIT_HOME=/srv/vm%%s"' in lines  # % is a systemd specifier
    assert "KillMode=process" in lines  # stopping vmkitd never stops a guest
    assert ("WantedBy=multi-user.target" if system else "WantedBy=default.target") in lines
    assert ("After=network-online.target" in lines) is system


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "vmkitd.service"
    unit.write_text(unit_text(shutil.which("python3") or "/usr/bin/python3", tmp_path, True))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "vmkitd.service" not in r.stderr, r.stderr  # no complaint about our unit


def test_vmkit_ssh_finds_the_private_half_of_a_key_given_at_creation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmkit.cli.provision import private_key_for
    from vmkit.client.provision import read_inputs

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    key = tmp_path / "elsewhere" / "k"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = key.with_name("k.pub").read_text()
    assert private_key_for(pub) is None  # not in ~/.ssh, not vmkit's
    sent = read_inputs(key.with_name("k.pub"), None, None)
    assert private_key_for(sent["ssh_keys"]) == key

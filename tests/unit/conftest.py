"""Unit tests: pure logic, no QEMU, no network. Each test must finish in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A hung unit test is a bug: stop it after 10 s (when pytest-timeout is installed)."""
    if not config.pluginmanager.hasplugin("timeout"):
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(10))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing under test should touch the real VMKIT_HOME; point it somewhere disposable."""
    monkeypatch.setenv("VMKIT_HOME", str(tmp_path_factory.mktemp("vmkit-home")))

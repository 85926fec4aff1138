"""The dashboard's backups page in headless Chromium: a backup listed, verified and restored
as a new VM from its row, each followed to its end on the page (fixtures of test_dashboard)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ..conftest import Daemon
from .test_dashboard import (browser, click, errors_in_console, log_in, screenshot, served,  # noqa: F401
                             shots, wait_for, wait_until)

pytestmark = pytest.mark.skipif(shutil.which("borg") is None, reason="borg is not installed")


def test_backups_page_lists_verifies_and_restores(served: Daemon, browser: Any,  # noqa: F811
                                                  shots: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{served.port}/ui/"  # type: ignore[attr-defined]
    where = Path(tempfile.mkdtemp(prefix="vmkit-ui-borg-", dir="/tmp"))
    with served.client() as c:
        try:
            c.add_backup_repo("uirepo", str(where / "repo"))
            c.create_vm("bkui", network="none")
            c.stop_vm("bkui")  # a stopped VM is backed up from its disk: quick
            c.wait_operation(c.create_backup("bkui").id)
            b = c.list_backups("bkui")[0]

            browser.get(f"{base}#/backups")
            if browser.find_elements(By.ID, "token"):
                log_in(browser, f"{base}#/backups", (served.home / "run/token").read_text().strip())
            row = f"tr[data-key='{b.id}']"
            cells = wait_for(browser, row, "the backup's row").text
            assert "bkui" in cells and "full" in cells and "uirepo" in cells

            click(browser, f"{row} button:nth-of-type(2)", "Verify")
            wait_until(browser, lambda d: d.find_element(By.ID, "backup-op").get_attribute(
                "data-state") == "succeeded", "the check to end")
            assert "is intact" in browser.find_element(By.ID, "backup-op").text
            screenshot(browser, shots, "dashboard-backups.png")

            click(browser, f"{row} button:nth-of-type(1)", "Restore")
            field = wait_for(browser, "#prompt-input", "the new VM's name")
            field.clear()
            field.send_keys("bkui-back")
            click(browser, "#confirm-ok", "OK")
            wait_until(browser, lambda d: "restored" in d.find_element(By.ID, "backup-op").text
                       and d.find_element(By.ID, "backup-op").get_attribute("data-state")
                       == "succeeded", "the restore to end")
            assert c.get_vm("bkui-back").state == "running"
            assert errors_in_console(browser) == []
        finally:
            for vm in ("bkui", "bkui-back"):
                if vm in {v.name for v in c.list_vms()}:
                    c.remove_vm(vm, force=True)
            if any(r.name == "uirepo" for r in c.list_backup_repos()):
                c.remove_backup_repo("uirepo")
            shutil.rmtree(where, ignore_errors=True)

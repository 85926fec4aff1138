"""The web dashboard in headless Chromium (Debian's chromium + chromium-driver, driven by
selenium; nothing is downloaded): log in, create a VM from the form, type into its serial
console, see a VNC display connect, stop and delete the VM; snapshot a VM from its page,
restore and fork the snapshot, pause and resume the VM.

Screenshots of each page go to $VMKIT_ARTIFACTS (default: a directory in pytest's tmp).
Skips when chromium or chromedriver is missing.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmkit

from ..conftest import Daemon, free_port

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver")
WAIT = 120  # seconds an element may take to appear: a boot under TCG, on a busy host


@pytest.fixture(scope="module")
def served(daemon: Daemon) -> Iterator[Daemon]:
    """A vmkitd with a TCP listener, on a home of its own that shares the test images."""
    import tempfile

    from ..conftest import clone_home, kill_qemus

    home = Path(tempfile.mkdtemp(prefix="vmkit-ui-", dir="/tmp"))
    home.rmdir()
    clone_home(daemon.home, home)
    d = Daemon(home)
    d.port = free_port()  # type: ignore[attr-defined]
    d.start("--listen", f"127.0.0.1:{d.port}")  # type: ignore[attr-defined]
    yield d
    d.stop()
    kill_qemus(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver: Any, css: str, what: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, css), message=f"waiting for {what}")[0]


def wait_until(driver: Any, check: Any, what: str) -> Any:
    """Wait for ``check``; one that read an element the live page has just re-rendered
    (stale) is asked again, as a person would look again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)
                         ).until(check, message=what)


def click(driver: Any, css: str, what: str) -> None:
    """Click the element once it is there; the live list re-renders rows as VMs change, so
    an element found a moment ago may have been replaced: find it again then."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d: Any) -> bool:
        try:
            for element in d.find_elements(By.CSS_SELECTOR, css):
                element.click()
                return True
        except StaleElementReferenceException:
            pass
        return False

    wait_until(driver, clicked, f"clicking {what}")


def errors_in_console(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $VMKIT_ARTIFACTS, else the tests' tmp dir (never the repo)."""
    where = os.environ.get("VMKIT_ARTIFACTS")
    return Path(where) if where else tmp_path_factory.mktemp("screenshots")


def screenshot(driver: Any, shots: Path, name: str) -> Path:
    shots.mkdir(parents=True, exist_ok=True)
    path = shots / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def log_in(driver: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base)
    field = wait_for(driver, "#token", "the login form")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def terminal_text(driver: Any) -> str:
    return str(driver.execute_script(
        "return document.querySelector('.terminal .xterm-rows')?.innerText || ''"))


def type_in_console(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, ".terminal").click()
    driver.switch_to.active_element.send_keys(text)


def test_dashboard(served: Daemon, browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{served.port}/ui/"  # type: ignore[attr-defined]
    token = (served.home / "run" / "token").read_text().strip()
    name, n = f"web{random.randrange(1000)}", random.randrange(10000, 99999)

    # A wrong token: a clear error, and the login form stays.
    log_in(browser, base, "not-the-token")
    error = wait_until(browser, lambda d: d.find_element(By.ID, "token-error").text,
                       "the login error")
    assert "refused this token" in error
    assert browser.find_element(By.ID, "token").get_attribute("aria-invalid") == "true"
    browser.get_log("browser")  # that 401 is expected in the console; nothing after it is

    # The login page shows neither the nav bar nor "Log out".
    assert not browser.find_element(By.ID, "nav").is_displayed()
    assert not browser.find_element(By.ID, "logout").is_displayed()
    log_in(browser, base, token)
    wait_for(browser, "#nav:not([hidden])", "the logged-in page")
    assert "token" not in browser.current_url
    assert browser.find_element(By.ID, "logout").is_displayed()

    # Create from the form: an invalid value first, its message next to the field.
    wait_for(browser, "a.button[href='#/new']", "the VM list").click()
    wait_for(browser, "#create", "the create form")
    browser.find_element(By.ID, "name").send_keys(name)
    click(browser, "#networks input[value='nat']", "untick nat")
    click(browser, "#networks input[value='restricted']", "tick restricted")
    memory = browser.find_element(By.ID, "memory")
    memory.clear()
    memory.send_keys("12")
    browser.find_element(By.CSS_SELECTOR, "#create button[type=submit]").click()
    wait_until(browser, lambda d: "too little" in d.find_element(By.ID, "memory-error").text,
               "the memory field's message")
    assert memory.get_attribute("aria-invalid") == "true"
    browser.get_log("browser")  # the 422 is expected
    memory.clear()
    memory.send_keys("256M")
    browser.find_element(By.CSS_SELECTOR, "#create button[type=submit]").click()

    # Its page: running, and the console echoes what is typed.
    wait_for(browser, "h1 + .state[data-state='running']", "the VM running")
    wait_for(browser, ".terminal[data-connected='1']", "the console to connect")
    type_in_console(browser, f"\necho hello-$(({n} - 1 + 1))\n")
    wait_until(browser, lambda d: f"hello-{n}" in terminal_text(d), "the echo in the console")
    browser.execute_script("document.querySelector('.terminal').scrollIntoView()")
    screenshot(browser, shots, "dashboard-console.png")

    # The websocket drops: the console reconnects and typing works again.
    browser.execute_script("document.querySelector('.terminal').vmkitSocket.close()")
    wait_for(browser, ".terminal[data-connected='1']", "the console to reconnect")
    type_in_console(browser, f"echo again-$(({n} + 1))\n")
    wait_until(browser, lambda d: f"again-{n + 1}" in terminal_text(d), "the second echo")

    # Its charts: legends, units, and the guest's RAM as a labelled limit.
    wait_for(browser, "[data-chart='Memory'][data-readings='3']", "three memory readings")
    memory = browser.find_element(By.CSS_SELECTOR, "[data-chart='Memory']")
    assert "guest RAM given (limit)" in memory.find_element(By.CSS_SELECTOR, ".u-legend").text
    assert "guest RAM given (limit): 256M" in memory.find_element(By.TAG_NAME, "figcaption").text
    assert "(bytes)" in memory.find_element(By.CSS_SELECTOR, "h3").text
    browser.execute_script("document.getElementById('stats-h').scrollIntoView()")
    screenshot(browser, shots, "dashboard-charts.png")

    # The list shows it live, and opens at its top although the VM page was scrolled.
    assert browser.execute_script("return window.scrollY") > 0
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/']").click()
    wait_for(browser, f"tr[data-vm='{name}'] [data-state='running']", "the VM's row")
    assert browser.execute_script("return window.scrollY") == 0
    screenshot(browser, shots, "dashboard-list.png")

    # Stop it from its row (confirmed), then delete it with the bulk bar (confirmed).
    click(browser, f"tr[data-vm='{name}'] [data-action='stop']", "Stop")
    click(browser, "#confirm-ok", "the confirmation")
    wait_for(browser, f"tr[data-vm='{name}'] [data-state='stopped']", "the VM stopped")
    assert not browser.find_element(By.ID, "bulk").is_displayed()
    click(browser, f"tr[data-vm='{name}'] [data-select]", "its checkbox")
    wait_for(browser, "#bulk:not([hidden])", "the bulk bar")
    click(browser, "#bulk [data-bulk='delete']", "Delete selected")
    click(browser, "#confirm-ok", "the confirmation")
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-vm='{name}']"),
               "the VM gone from the list")
    assert errors_in_console(browser) == []


def test_vnc_display_and_a_vm_deleted_under_its_page(served: Daemon, browser: Any,
                                                     shots: Path) -> None:
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{served.port}/ui/"  # type: ignore[attr-defined]
    with served.client() as c:
        c.create_vm("screen1", network="none", display="vnc")
        browser.get(f"{base}#/vm/screen1")
        if browser.find_elements(By.ID, "token"):
            log_in(browser, f"{base}#/vm/screen1", (served.home / "run/token").read_text().strip())
        wait_for(browser, "#vnc-screen[data-connected='1'] canvas", "the VNC display")
        browser.execute_script("document.getElementById('vnc-screen').scrollIntoView()")
        screenshot(browser, shots, "dashboard-vnc.png")
        browser.get_log("browser")
        c.remove_vm("screen1", force=True)
    banner = wait_for(browser, ".banner", "the page to say the VM is gone")
    assert "was deleted" in banner.text
    assert errors_in_console(browser) == []


def test_narrow_window_keeps_everything_reachable(served: Daemon, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(420, 800)
    try:
        browser.get(f"http://127.0.0.1:{served.port}/ui/#/new")  # type: ignore[attr-defined]
        form = wait_for(browser, "#create", "the create form")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 420, "the page scrolls sideways on a narrow window"
        assert form.find_element(By.ID, "name") == browser.switch_to.active_element
    finally:
        browser.set_window_size(1280, 800)


def test_snapshot_restore_fork_pause_and_resume_from_the_vm_page(served: Daemon,
                                                                   browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{served.port}/ui/"  # type: ignore[attr-defined]
    name, fork = f"snap{random.randrange(1000)}", f"fork{random.randrange(1000)}"

    def cat_marker(c: Any) -> str:
        result = c.exec(name, ["cat", "/root/m"])
        assert result.exit_code == 0, result
        return result.stdout.decode().strip()

    with served.client() as c:
        c.create_vm(name, network="none")
        try:
            browser.get(f"{base}#/vm/{name}")
            if browser.find_elements(By.ID, "token"):
                log_in(browser, base, (served.home / "run/token").read_text().strip())
                wait_for(browser, "#nav:not([hidden])", "the logged-in page")
                browser.get(f"{base}#/vm/{name}")
            wait_for(browser, "h1 + .state[data-state='running']", "the VM running")
            wait_for(browser, "#snap-h ~ div p.muted", "the empty snapshot tree")
            browser.get_log("browser")
            c.exec(name, ["sh", "-c", "echo one > /root/m && sync"])

            # A snapshot from the Snapshots card: the tree shows it (an event updates it).
            browser.find_element(By.ID, "snap-name").send_keys("first")
            browser.find_element(By.CSS_SELECTOR, "#snap-h ~ form button[type=submit]").click()
            wait_for(browser, "button[aria-label='Restore first']", "the snapshot in the tree")
            assert [s["name"] for s in c.list_snapshots(name)] == ["first"]

            # Restore it (confirmed): the guest's file says what it said then.
            c.exec(name, ["sh", "-c", "echo two > /root/m && sync"])
            assert cat_marker(c) == "two"
            pid = c.get_vm(name)["pid"]
            click(browser, "button[aria-label='Restore first']", "Restore")
            click(browser, "#confirm-ok", "the confirmation")
            wait_until(browser, lambda d: c.get_vm(name)["pid"] not in (pid, None),
                       "the VM restored (a new QEMU)")
            wait_for(browser, "h1 + .state[data-state='running']", "the VM running again")
            assert cat_marker(c) == "one"

            # Pause and resume from the page's buttons.
            click(browser, ".vm-head [data-action='pause']", "Pause")
            wait_for(browser, "h1 + .state[data-state='paused']", "the VM paused")
            assert c.get_vm(name)["state"] == "paused"
            click(browser, ".vm-head [data-action='resume']", "Resume")
            wait_for(browser, "h1 + .state[data-state='running']", "the VM running again")
            assert cat_marker(c) == "one"

            # The tree: the VM at its root, sizes, and "now" under the current snapshot.
            tree = browser.find_element(By.CSS_SELECTOR, ".snap-tree")
            wait_until(browser, lambda d: tree.find_elements(
                By.CSS_SELECTOR, "li[data-snap='first'] > ul > li.now"), "now under first")
            size = tree.find_element(By.CSS_SELECTOR, "li[data-snap='first'] .size").text
            assert size[-1] in "KMG" and size != "0B", size
            # A second snapshot hangs under the first; delete it from the tree (confirmed).
            browser.find_element(By.ID, "snap-name").send_keys("second")
            browser.find_element(By.CSS_SELECTOR, "#snap-h ~ form button[type=submit]").click()
            wait_for(browser, "li[data-snap='first'] li[data-snap='second'] > ul > li.now",
                     "second under first, now under second")
            click(browser, "button[aria-label='Delete second']", "Delete")
            click(browser, "#confirm-ok", "the confirmation")
            wait_until(browser, lambda d: not d.find_elements(
                By.CSS_SELECTOR, "li[data-snap='second']"), "second gone from the tree")
            assert [s["name"] for s in c.list_snapshots(name)] == ["first"]

            # Fork the snapshot, named in the prompt: the page moves to the fork, which runs.
            browser.execute_script("document.getElementById('snap-h').scrollIntoView()")
            screenshot(browser, shots, "dashboard-snapshots.png")
            click(browser, "button[aria-label='Fork first']", "Fork")
            field = wait_for(browser, "#confirm[open] #prompt-input", "the fork's name")
            field.clear()
            field.send_keys(fork)
            click(browser, "#confirm-ok", "OK")
            wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text == fork,
                       "the fork's page")
            wait_for(browser, "h1 + .state[data-state='running']", "the fork running")
            forked = c.get_vm(fork)
            assert (forked["state"], forked["forked_from"]) == ("running", f"{name}@first")
            assert c.exec(fork, ["cat", "/root/m"]).stdout.decode().strip() == "one"
            assert errors_in_console(browser) == []
        finally:
            # Leave the VM's page first: its charts would ask for a VM removed under them.
            browser.get(f"{base}#/host")
            wait_for(browser, "#usage-h", "the host page")
            for vm in (fork, name):
                try:
                    c.remove_vm(vm, force=True)
                except vmkit.NotFoundError:
                    pass


def logged_in(browser: Any, served: Daemon, page: str) -> None:
    """Open ``page`` of the dashboard, logging in first if this browser is not."""
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{served.port}/ui/"  # type: ignore[attr-defined]
    browser.get(f"{base}{page}")
    errors_in_console(browser)  # what the page left before said (e.g. a VM removed under it)
    if browser.find_elements(By.ID, "token"):
        log_in(browser, base, (served.home / "run/token").read_text().strip())
        wait_for(browser, "#nav:not([hidden])", "the logged-in page")
        browser.get(f"{base}{page}")


def test_create_form_at_parity_with_vmkit_run(served: Daemon, browser: Any,
                                              shots: Path) -> None:
    from selenium.webdriver.common.by import By

    logged_in(browser, served, "#/new")
    wait_for(browser, "#networks input[value='nat']:checked", "the networks")
    # No name (one is made up), disposable (no network card), a disk I/O limit.
    browser.find_element(By.CSS_SELECTOR, "#more summary").click()
    click(browser, "#disposable", "Disposable")
    assert not browser.find_elements(By.CSS_SELECTOR, "#networks input:checked")
    browser.find_element(By.ID, "io_limit").send_keys("300iops")
    screenshot(browser, shots, "dashboard-create.png")
    browser.find_element(By.CSS_SELECTOR, "#create button[type=submit]").click()
    wait_for(browser, "h1 + .state[data-state='running']", "the VM running")
    name = browser.find_element(By.CSS_SELECTOR, ".vm-head h1").text
    with served.client() as c:
        try:
            vm = c.get_vm(name)
            assert (vm["disposable"], vm["io_iops"], vm["networks"]) == (True, 300, [])
            [run] = [op for op in c._send("GET", "/operations").json() if op["target"] == name]
            assert (run["kind"], run["state"]) == ("run", "succeeded")
            assert errors_in_console(browser) == []  # before the page's VM goes
        finally:
            c.remove_vm(name, force=True)


def test_pages_of_images_networks_templates_hosts_events_and_the_host(
        served: Daemon, browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    n = random.randrange(1000, 9999)
    image, net = f"img{n}", f"net{n}"
    logged_in(browser, served, "#/host")
    for bar in ("cpu-usage", "memory-usage", "disk-usage"):
        wait_for(browser, f"meter#{bar}", bar)
    used = float(browser.find_element(By.ID, "memory-usage").get_attribute("value"))
    assert 0 < used < float(browser.find_element(By.ID, "memory-usage").get_attribute("max"))
    screenshot(browser, shots, "dashboard-host.png")

    # Images: build one with progress, then remove it; an import of a missing file says so.
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/images']").click()
    wait_for(browser, "tr[data-key='tiny']", "the tiny image")  # the page and its list
    field = browser.find_element(By.ID, "build-name")
    field.clear()
    field.send_keys(image)
    Select(browser.find_element(By.ID, "build-builder")).select_by_value("tiny")
    browser.find_element(By.CSS_SELECTOR, "#build button[type=submit]").click()
    wait_for(browser, "#build .op[data-state='succeeded']", "the build to finish")
    wait_for(browser, f"tr[data-key='{image}']", "the built image in the list")
    screenshot(browser, shots, "dashboard-images.png")
    click(browser, f"button[aria-label='Remove {image}']", "Remove")
    click(browser, "#confirm-ok", "the confirmation")
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-key='{image}']"),
               "the image gone")
    browser.find_element(By.ID, "import-name").send_keys(f"iso{n}")
    browser.find_element(By.ID, "import-path").send_keys("/nonexistent/x.iso")
    browser.find_element(By.CSS_SELECTOR, "#import button[type=submit]").click()
    wait_until(browser, lambda d: "/nonexistent/x.iso" in d.find_element(
        By.CSS_SELECTOR, "#import .op-status.error").text, "the import's error")
    browser.get_log("browser")  # that refusal is expected

    # Networks: make an isolated one, then delete it.
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/networks']").click()
    wait_for(browser, "#net-name", "the networks page").send_keys(net)
    browser.find_element(By.ID, "net-isolated").click()
    browser.find_element(By.CSS_SELECTOR, "#net-create button[type=submit]").click()
    wait_for(browser, f"tr[data-key='{net}']", "the new network")
    screenshot(browser, shots, "dashboard-networks.png")
    click(browser, f"button[aria-label='Delete {net}']", "Delete")
    click(browser, "#confirm-ok", "the confirmation")
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-key='{net}']"),
               "the network gone")

    # Templates: a source that does not exist is refused with vmkitd's message.
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/templates']").click()
    wait_for(browser, "#tpl-name", "the templates page").send_keys(f"t{n}")
    browser.find_element(By.ID, "tpl-source").send_keys("nosuchvm@snap1")
    browser.find_element(By.CSS_SELECTOR, "#tpl-create button[type=submit]").click()
    wait_until(browser, lambda d: "nosuchvm" in d.find_element(
        By.CSS_SELECTOR, "#tpl-create .form-error").text, "the template's error")
    browser.get_log("browser")

    # Remote hosts: a wrong token is refused with vmkitd's message; this vmkitd itself, with
    # its token, is added (checked by a call, as 'vmkit host add' does), then removed.
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/hosts']").click()
    wait_until(browser, lambda d: "No remote hosts yet" in d.find_element(By.ID, "main").text,
               "the remote hosts page")
    url = f"http://127.0.0.1:{served.port}"  # type: ignore[attr-defined]
    for box, text in (("host-name", f"h{n}"), ("host-url", url), ("host-token", "wrong")):
        browser.find_element(By.ID, box).send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#host-add button[type=submit]").click()
    wait_until(browser, lambda d: "refused the token" in d.find_element(
        By.CSS_SELECTOR, "#host-add .form-error").text, "the wrong token refused")
    browser.get_log("browser")
    browser.find_element(By.ID, "host-token").clear()
    browser.find_element(By.ID, "host-token").send_keys(
        (served.home / "run/token").read_text().strip())
    browser.find_element(By.CSS_SELECTOR, "#host-add button[type=submit]").click()
    wait_for(browser, f"tr[data-key='h{n}']", "the added host")
    screenshot(browser, shots, "dashboard-hosts.png")
    with served.client() as c:
        assert {"name": f"h{n}", "url": url} in c._send("GET", "/hosts").json()
    click(browser, f"button[aria-label='Delete h{n}']", "Delete")
    click(browser, "#confirm-ok", "the confirmation")
    wait_until(browser, lambda d: "No remote hosts yet" in d.find_element(By.ID, "main").text,
               "the host gone")

    # Cluster: this vmkitd is in none, and the page says how to start one.
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/cluster']").click()
    no_cluster = wait_for(browser, "#no-cluster", "the cluster page").text
    assert "not in a cluster" in no_cluster and "sudo vmkit cluster up --hosts 3" in no_cluster
    screenshot(browser, shots, "dashboard-cluster.png")
    browser.get_log("browser")  # the 409 of /v1/cluster/hosts is how it knows

    # Events: the build, its end and the VM changes of this tab.
    browser.find_element(By.CSS_SELECTOR, "#nav a[href='#/events']").click()
    wait_until(browser, lambda d: any(image in r.text and "succeeded" in r.text for r in
                                      d.find_elements(By.CSS_SELECTOR, "table.events tr")),
               "the build in the events")
    screenshot(browser, shots, "dashboard-events.png")
    assert errors_in_console(browser) == []

    # Log out; a #token= link opened in this same tab logs in again.
    token = (served.home / "run/token").read_text().strip()
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "#token", "the login page")
    assert not browser.find_element(By.ID, "nav").is_displayed()
    screenshot(browser, shots, "dashboard-login.png")
    browser.execute_script(f"location.hash = '#token={token}'")
    wait_for(browser, "#nav:not([hidden])", "logged in from the link")
    assert "token" not in browser.current_url

"""The dashboard in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, via Selenium)
during a live run: a bad release on the simulated shop is detected, the incident page shows the
graph and the evidence charts, a person enters a token and clicks Approve, the rollback runs
against the simulator and the page shows the incident resolve. Screenshots go to
``$AIOPS_SCREENSHOTS`` (default ``test-artifacts/screenshots/``), kept by CI as artifacts.

Skips with the reason when Chromium, its driver or Selenium is missing, except under
``AIOPS_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where that fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shop_loop import TOKEN, WEBHOOK, ShopLoop

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,2200"]  # fmt: skip


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        why = f"headless Chromium unavailable, missing {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("AIOPS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why}; AIOPS_REQUIRE_BROWSER=1 needs it")
        pytest.skip(why)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[ShopLoop]:
    loop = ShopLoop(tmp_path / "data")
    try:
        yield loop
    finally:
        loop.close()


def _shots() -> Path:
    folder = Path(os.environ.get("AIOPS_SCREENSHOTS") or ROOT / "test-artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_open_an_incident_approve_the_rollback_and_watch_it_resolve(browser: Any, shop: ShopLoop) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(cond: Any, timeout: float, what: str) -> Any:
        return WebDriverWait(browser, timeout, 0.2, (NoSuchElementException, StaleElementReferenceException)).until(
            cond, f"timed out waiting for {what}")  # fmt: skip

    shots = _shots()
    action = shop.run_until(shop.proposed, 800)  # at full speed until the rollback is proposed
    base = shop.serve(steps_per_s=10)

    browser.get(base + "/")
    row = wait(lambda d: d.find_element(By.CSS_SELECTOR, f'tr.incident[data-id="{action.incident_id}"]'), 10, "the incident row")
    assert row.get_attribute("data-status") == "open"
    assert "rollback" in row.text and "cart" in row.text
    browser.save_screenshot(str(shots / "1-incidents.png"))

    row.find_element(By.TAG_NAME, "a").click()
    graph = wait(lambda d: d.find_element(By.ID, "graph"), 10, "the dependency graph")
    assert graph.size["width"] > 300 and graph.size["height"] > 100
    nodes = graph.find_elements(By.CSS_SELECTOR, "g.node")
    assert len(nodes) >= 8, "the shop's services are drawn"
    assert graph.find_element(By.CSS_SELECTOR, "g.node.rc1").get_attribute("data-service") == "cart"
    assert graph.find_elements(By.CSS_SELECTOR, "line.edge.hot"), "anomalous calls are marked"
    charts = browser.find_elements(By.CSS_SELECTOR, "#evidence svg.chart")
    assert charts and all(c.size["height"] > 50 for c in charts)
    lines = browser.find_elements(By.CSS_SELECTOR, "#evidence svg.chart polyline.line")
    assert lines and all(len(line.get_attribute("points").split()) > 10 for line in lines)
    assert browser.find_elements(By.CSS_SELECTOR, "#evidence rect.span"), "anomaly spans are shaded"
    assert browser.find_elements(By.CSS_SELECTOR, "#evidence line.marker"), "the deployment is marked"
    browser.save_screenshot(str(shots / "2-incident.png"))

    approve = f'button[data-decide="approve"][data-approval="{action.id}"]'
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "save-token").click()
    wait(lambda d: (b := d.find_element(By.CSS_SELECTOR, approve)).is_enabled() and b, 5, "the Approve button").click()
    notice = wait(lambda d: d.find_element(By.ID, "notice").text or None, 10, "the decision's answer")
    assert notice.startswith("Approved: rollback"), notice

    wait(lambda d: d.find_element(By.ID, f"action-{action.id}").get_attribute("data-status") == "succeeded", 20,
         "the rollback to run")  # fmt: skip
    wait(lambda d: d.find_element(By.ID, "incident").get_attribute("data-status") == "resolved", 40,
         "the incident to resolve")  # fmt: skip
    audit = wait(lambda d: d.find_element(By.ID, "audit-table"), 10, "the audit trail").text
    assert "alice" in audit and "approve" in audit
    assert not browser.find_elements(By.CSS_SELECTOR, approve), "no buttons once decided"
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "3-resolved.png"))

    browser.get(base + "/ui/config")
    page = wait(lambda d: d.find_element(By.ID, "playbooks"), 10, "the configuration page")
    assert "approver" in page.text
    assert TOKEN not in browser.page_source and WEBHOOK not in browser.page_source
    browser.save_screenshot(str(shots / "4-config.png"))
    browser.get(base + "/ui/health")
    wait(lambda d: d.find_element(By.ID, "headlines").text, 10, "the health figures")
    browser.save_screenshot(str(shots / "5-health.png"))


def test_the_demo_loop_in_the_browser(browser: Any, tmp_path: Path) -> None:
    """What a newcomer does: start ``aiops demo``, open the printed address, approve the rollback."""
    import subprocess
    import sys
    import time

    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(cond: Any, timeout: float, what: str) -> Any:
        return WebDriverWait(browser, timeout, 0.3, (NoSuchElementException, StaleElementReferenceException)).until(
            cond, f"timed out waiting for {what}")  # fmt: skip

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    out = (tmp_path / "demo.out").open("w")
    demo = subprocess.Popen([sys.executable, "-m", "aiops", "demo", "--port", "0", "--speed", "120", "--token", "tok-demo",
                             "--data-dir", str(tmp_path / "data"), "--duration", "150"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
    try:
        port_file = tmp_path / "data" / "api.port"
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert demo.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.out").read_text()
            time.sleep(0.1)
        browser.get(f"http://127.0.0.1:{port_file.read_text()}/")
        browser.find_element(By.ID, "token").send_keys("tok-demo")
        browser.find_element(By.ID, "save-token").click()
        row = wait(lambda d: next((r for r in d.find_elements(By.CSS_SELECTOR, "tr.incident")
                                   if "rollback" in r.text and r.get_attribute("data-status") == "open"), None),
                   90, "the bad release's incident with its rollback proposal")  # fmt: skip
        row.find_element(By.TAG_NAME, "a").click()
        wait(lambda d: d.find_element(By.CSS_SELECTOR, "#graph g.node.rc1"), 10, "the graph with the top candidate")
        approve = wait(lambda d: (b := d.find_element(By.CSS_SELECTOR, 'button[data-decide="approve"]')).is_enabled() and b,
                       10, "the Approve button")  # fmt: skip
        approve.click()
        wait(lambda d: d.find_element(By.ID, "incident").get_attribute("data-status") == "resolved", 60,
             "the incident to resolve after the rollback")  # fmt: skip
        assert browser.find_elements(By.CSS_SELECTOR, '[data-status="succeeded"]'), "the rollback ran"
        browser.save_screenshot(str(_shots() / "6-demo-resolved.png"))
    finally:
        demo.terminate()
        demo.wait(timeout=30)
        out.close()

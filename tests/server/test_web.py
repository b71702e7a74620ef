"""The web view in a real browser: Debian's Chromium driven by Selenium, against
``tidal serve`` on loopback. A query's rows and histogram, a correlation drawn
with its gaps, an entity's timeline with its legend, and a live correlation
arriving over SSE while events are pushed.

With ``TIDAL_SCREENSHOTS=DIR`` each view is saved there as a PNG (the pictures
in ``docs/`` were made so)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tidal

from .conftest import Served, serving

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMEDRIVER).exists(),
                                reason="chromium-driver is not installed (make test installs it)")

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SEQUENCE = "sequence by user [process where true] [network where true]"


def events() -> list[dict]:
    """Processes and network events of three users, a few seconds apart."""
    rows = []
    for i in range(30):
        rows.append({"timestamp": f"2026-01-01T00:00:{i:02d}Z", "entity": f"host-{i % 3}",
                     "user": f"u{i % 3}", "level": "error" if i % 7 == 0 else "info",
                     "event": {"category": "network" if i % 2 else "process"}, "i": i})
    return rows


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,1400",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    with tidal.open(tmp_path / "store") as store, serving(store) as running:
        store.append(events())
        yield running


def wait(driver: webdriver.Chrome, found, timeout: float = 30):
    return WebDriverWait(driver, timeout).until(lambda d: found(d) or False)


def shot(driver: webdriver.Chrome, name: str) -> None:
    folder = os.environ.get("TIDAL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"web-{name}.png"))


def test_a_query_shows_rows_a_histogram_and_a_correlation(browser, served):
    browser.get(served.url + "/")
    assert browser.title == "Tidal"
    Select(browser.find_element(By.ID, "language")).select_by_value("eql")
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys('any where level == "error"')
    browser.find_element(By.ID, "run").click()
    status = wait(browser, lambda d: "events in" in d.find_element(By.ID, "query-status").text
                  and d.find_element(By.ID, "query-status").text)
    assert status.startswith("5 events in")  # i = 0, 7, 14, 21, 28
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == 5
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#results th")]
    assert "timestamp" in headers and "level" in headers
    bars = browser.find_elements(By.CSS_SELECTOR, "#histogram rect.bar")
    assert bars and sum(int(b.find_element(By.TAG_NAME, "title").get_attribute("textContent")
                            .split()[0]) for b in bars) == 5

    box.clear()
    box.send_keys(SEQUENCE)
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda d: "correlations" in d.find_element(By.ID, "query-status").text)
    items = browser.find_elements(By.CSS_SELECTOR, "#correlations .corr")
    assert len(items) >= 3
    steps = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sequence circle.step"))
    assert len(steps) == 2
    gaps = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#sequence text.gap")]
    assert gaps and gaps[0].startswith("+") and gaps[0].endswith(" s")
    shot(browser, "query")


def test_a_bad_query_shows_where_it_is_wrong(browser, served):
    browser.get(served.url + "/")
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys("any where (")
    browser.find_element(By.ID, "run").click()
    status = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#query-status.error"))
    assert status.text.startswith("400:") and "line 1" in status.text


def test_an_entity_timeline_is_drawn_coloured_with_a_legend(browser, served):
    browser.get(served.url + "/")
    browser.find_element(By.ID, "entity").send_keys("host-0")
    browser.find_element(By.ID, "show-timeline").click()
    dots = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline circle.event"))
    assert len(dots) == 10
    assert len({dot.get_attribute("fill") for dot in dots}) == 2  # info and error
    legend = browser.find_element(By.ID, "timeline-legend").text
    assert "info" in legend and "error" in legend
    assert browser.find_element(By.ID, "timeline-status").text == "10 events of host-0"
    shot(browser, "timeline")


def test_a_live_correlation_arrives_while_events_are_pushed(browser, served):
    browser.get(served.url + "/")
    browser.find_element(By.ID, "live-query").send_keys(
        'sequence by user [process where tag == "start"] [network where tag == "done"]')
    browser.find_element(By.ID, "live-start").click()
    wait(browser, lambda d: d.find_element(By.ID, "live-status").text == "listening")
    wait(browser, lambda d: served.store.stats()["followers"] >= 1)
    pushed = [{"timestamp": "2026-01-02T00:00:00Z", "entity": "h", "user": "zoe",
               "event": {"category": "process"}, "tag": "start"},
              {"timestamp": "2026-01-02T00:00:01Z", "entity": "h", "user": "zoe",
               "event": {"category": "network"}, "tag": "done"}]
    got = httpx.post(served.url + "/v1/events", json=pushed, timeout=30)
    assert got.status_code == 200
    item = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#live li.correlation"))
    assert '{"user":"zoe"}' in item[0].text and "(2 events)" in item[0].text
    shot(browser, "live")
    browser.find_element(By.ID, "live-stop").click()
    assert browser.find_element(By.ID, "live-status").text == "stopped"


def test_a_logql_query_shows_lines_and_a_metric_shows_points(browser, served):
    browser.get(served.url + "/")
    Select(browser.find_element(By.ID, "language")).select_by_value("logql")
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys('{level="error", user=~"u0|u1"}')
    browser.find_element(By.ID, "run").click()
    status = wait(browser, lambda d: "events in" in d.find_element(By.ID, "query-status").text
                  and d.find_element(By.ID, "query-status").text)
    assert status.startswith("4 events in")  # i = 0, 7, 21, 28 (u0 or u1 of 0, 7, 14, 21, 28)
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#results th")]
    assert headers == ["timestamp", "labels", "line"]
    first = browser.find_element(By.CSS_SELECTOR, "#results tbody tr td").text
    assert first.startswith("2026-01-01T00:00:28")  # newest first
    bars = browser.find_elements(By.CSS_SELECTOR, "#histogram rect.bar")
    assert sum(int(b.find_element(By.TAG_NAME, "title").get_attribute("textContent")
                   .split()[0]) for b in bars) == 4
    shot(browser, "logql")
    box.clear()
    box.send_keys('sum by (level) (count_over_time({user=~".+"}[30s]))')
    browser.find_element(By.ID, "run").click()
    wait(browser, lambda d: "rows in" in d.find_element(By.ID, "query-status").text)
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    totals = {row[0]: float(row[2]) for row in cells}  # (the last step holds all 30 s)
    assert totals == {'{level="error"}': 5.0, '{level="info"}': 25.0}

"""The web inspector in a real browser (headless Chromium): every page opens, a partition link
is followed, a filter is applied, a failing partition's "why" names the failing stage and error,
and a page in progress refreshes itself without losing its scroll position or filters.
Screenshots of each step go to the test's tmp dir."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.browser import chromium
from support.inspector import Server, build_home, publish, serve, stagebus

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("inspector-browser")
    with serve(build_home(root / "home", root / "data")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def by_css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting in the browser"
        time.sleep(0.2)


def shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    assert path.stat().st_size > 1000
    return path


@pytest.mark.parametrize(("path", "heading", "marker"), [
    ("/", "Overview", "#counts"),
    ("/ledger", "Ledger", "#ledger"),
    ("/partition?dataset=nums&partition=a", "nums/a", "#why"),
    ("/runs", "Runs", "#runs"),
    ("/runs/r2", "Run r2", "svg.dag"),
    ("/rejects?run=r1", "Rejects", "#rejects"),
    ("/log", "Log", "#log"),
    ("/log/1", "Event 1", "#event"),
    ("/log/verify", "Verify the log", "#verify-result"),
])
def test_every_page_opens(server: Server, browser: Any, tmp_path: Path, path: str, heading: str,
                          marker: str) -> None:
    browser.get(server.url + path)
    assert by_css(browser, "h1").text == heading
    assert by_css(browser, marker).is_displayed()
    assert all_css(browser, "#error") == []
    shot(browser, tmp_path, heading.replace("/", "_").replace(" ", "_"))


def test_following_a_partition_link_from_the_ledger(server: Server, browser: Any, tmp_path: Path) -> None:
    browser.get(server.url + "/ledger")
    links = all_css(browser, "a.partition-link")
    assert [a.text for a in links] == ["a", "b", "c"]
    links[1].click()
    wait_for(lambda: by_css(browser, "h1").text == "nums/b")
    assert "partition=b" in browser.current_url
    assert by_css(browser, "#partition-state .status").text == "invalid"
    shot(browser, tmp_path, "partition-b")


def test_applying_a_filter_keeps_it_in_the_form(server: Server, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(server.url + "/ledger")
    Select(by_css(browser, "#f-status")).select_by_value("invalid")
    by_css(browser, "#f-apply").click()
    wait_for(lambda: "status=invalid" in browser.current_url)
    assert [a.text for a in all_css(browser, "a.partition-link")] == ["b"]
    assert Select(by_css(browser, "#f-status")).first_selected_option.text == "invalid"
    assert by_css(browser, "#ledger-total").text.startswith("1 partition(s) match")
    shot(browser, tmp_path, "ledger-invalid")
    # a text filter on top of it
    box = by_css(browser, "#f-q")
    box.clear()
    box.send_keys("nums/c")
    by_css(browser, "#f-apply").click()
    wait_for(lambda: "q=nums%2Fc" in browser.current_url)
    assert all_css(browser, "a.partition-link") == []  # c is valid, not invalid


def test_a_failing_partitions_why_names_the_failing_stage_and_error(server: Server, browser: Any,
                                                                     tmp_path: Path) -> None:
    browser.get(server.url + "/partition?dataset=nums&partition=b")
    failed = by_css(browser, '#why li[data-kind="failed"]')
    assert failed.get_attribute("data-stage") == "load"
    assert "load failed for good" in failed.text and "PermanentStageError: poisoned record" in failed.text
    blocked = by_css(browser, '#why li[data-kind="blocked"][data-stage="double"]')
    assert "upstream stage load failed" in blocked.text
    shot(browser, tmp_path, "why-b")
    # Each line links to the log positions it rests on
    failed.find_element("css selector", "a.position").click()
    wait_for(lambda: by_css(browser, "h1").text.startswith("Event "))
    assert "stage_failed" in by_css(browser, "#event").text
    assert "poisoned record" in by_css(browser, "#event").text


def test_a_page_in_progress_refreshes_in_place_keeping_scroll_and_filters(tmp_path: Path) -> None:
    # Given a home with 60 partitions published and not processed yet, and a ledger page filtered
    # and scrolled down in a short window
    home = tmp_path / "home"
    for i in range(60):
        publish(home, tmp_path / "data", "r1", f"p{i:02d}", [{"n": i}], seal=i == 59)
    with serve(home) as server, chromium(height=500) as browser:
        browser.get(server.url + "/ledger?q=nums%2Fp&limit=100")
        assert by_css(browser, "#live").get_attribute("data-live") == "1"
        assert len(all_css(browser, ".pending-row")) == 60
        browser.execute_script("window.scrollTo(0, 600)")
        wait_for(lambda: browser.execute_script("return window.scrollY") == 600)
        # When the pipeline processes them
        assert stagebus(home, "run").exit_code == 0
        # Then the rows turn valid without a reload: same document, same scroll, same filter
        browser.execute_script("document.body.setAttribute('data-before-refresh', 'kept')")
        wait_for(lambda: len(all_css(browser, ".valid-row")) == 60, timeout_s=30)
        assert int(by_css(browser, "#live").get_attribute("data-refreshed")) >= 1
        assert by_css(browser, "body").get_attribute("data-before-refresh") == "kept"
        assert browser.execute_script("return window.scrollY") == 600
        assert by_css(browser, "#f-q").get_attribute("value") == "nums/p"
        assert browser.current_url.endswith("/ui/ledger?q=nums%2Fp&limit=100")
        # and once nothing is pending the page stops polling
        wait_for(lambda: by_css(browser, "#live").get_attribute("data-live") == "0")
        shot(browser, tmp_path, "ledger-refreshed")

"""A visitor's view: headless Chromium (Debian's package, driven by Playwright) on the demo site."""

from __future__ import annotations

import shutil
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_visitor_opens_the_widget_asks_and_sees_the_answer_grow_with_a_source(live_parley, browser, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 800})  # a phone-width screen
    page.goto(live_parley.url + "/")
    # The widget lives in a shadow root; Playwright's CSS locators pierce open shadow roots.
    page.locator(".parley-launcher").click()
    page.locator(".parley-input").fill("How do I factory reset my router?")
    page.locator(".parley-input").press("Enter")

    answer = page.locator(".parley-bot").last
    lengths = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        lengths.append(len(answer.inner_text()))
        if page.locator(".parley-source").count():
            break
        time.sleep(0.05)
    grew = [b for a, b in zip(lengths, lengths[1:], strict=False) if b > a]
    assert len(grew) >= 2, f"the answer did not stream: {lengths[-5:]}"
    source = page.locator(".parley-source").first
    source.wait_for(state="visible")
    assert "router" in source.inner_text().lower()
    assert source.get_attribute("href").startswith(live_parley.url + "/kb/")
    page.screenshot(path=str(tmp_path / "widget.png"))
    # The page's own styles did not leak into the widget and vice versa.
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != ""
    page.close()

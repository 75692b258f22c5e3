"""The first hour, walked in Chromium on a fresh `serve` (no user yet), as a company's new admin,
agent and editor meet Parley: the first administrator, a Site for the company's own origin, a
question on the widget there, a person asked for with nobody online and an email address left,
the ticket that makes answered from the desk (the reply caught by a real SMTP server), and a
brief written and previewed in the studio.

Each step leaves a full-page screenshot in var/screenshots/first-hour/ (PARLEY_SCREENSHOTS
overrides the folder): the artifact to look at, since a user judges by what the page shows.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import DEMO_DIR, REPO, ManagedServer, StaticSite, free_port, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = Path(os.environ.get("PARLEY_SCREENSHOTS", REPO / "var" / "screenshots" / "first-hour"))
PASSWORD = "correct horse battery staple"
VISITOR = "dana@example.org"


class FreshParley(ManagedServer):
    """`serve` on an installation nobody has signed in to yet; outbound mail to a local catcher."""

    log_name = "first-hour.log"
    extra_env = {
        "CHAT_MAX_ANSWER_TOKENS": "32",
        # Short parts from one passage each: the walk is about the pages, not the prose (an
        # article is written in test_the_first_hour: 58 s in a full run, --durations).
        "CONTENT_SECTION_TOKENS": "24",
        "CONTENT_OUTLINE_TOKENS": "24",
        "CONTENT_RETRIEVAL_K": "1",
        "DESK_MAX_DRAFT_TOKENS": "32",
    }


@pytest.fixture(scope="module")
def outbox():
    """A real SMTP server the desk sends its replies to; the messages it got."""
    from aiosmtpd.controller import Controller

    received: list[tuple[str, list[str], bytes]] = []

    class Catcher:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    controller = Controller(Catcher(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, received
    controller.stop()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, outbox):
    controller, _ = outbox
    server = FreshParley(tmp_path_factory.mktemp("first-hour"), free_port())
    server.smtp_port = free_port()
    server.env.update(
        {
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(controller.port),
            "SMTP_INBOUND_PORT": str(server.smtp_port),
        }
    )
    server.migrate()
    server.manage("ingest", str(DEMO_DIR))
    server.start()
    yield server
    server.stop()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def reload_until(page, locator: str, seconds: float) -> None:
    """Reload the page until `locator` is there (work the Celery worker does in the background)."""
    deadline = time.monotonic() + seconds
    while page.locator(locator).count() == 0:
        assert time.monotonic() < deadline, f"{locator} did not appear on {page.url}"
        page.wait_for_timeout(2000)
        page.reload()


def test_a_normal_start_says_what_runs_where_and_nothing_alarming(fresh):
    import socket
    import urllib.request

    from tests.test_serve import ALARMING, _wait_for_log

    for path in ("/static/parley/widget.js", "/static/parley/parley.css"):
        with urllib.request.urlopen(fresh.url + path) as response:
            assert response.status == 200 and response.read()
    _wait_for_log(fresh, "parley-embedded@")  # the worker has started: its warnings came before
    _wait_for_log(fresh, '"GET /static/parley/parley.css HTTP/1.1" 200')
    started = fresh.read_log()
    assert f"Parley is running at {fresh.url}/" in started
    assert f"Live chats and email desk:    {fresh.url}/console/" in started
    assert f"Content studio:               {fresh.url}/studio/" in started
    assert f"Inbound email (SMTP):         127.0.0.1:{fresh.smtp_port}" in started
    assert f"Create the first administrator at {fresh.url}/setup/" in started
    for line in ALARMING:
        assert line.lower() not in started.lower(), line
    assert "-------------- [queues]" not in started  # Celery's banner: serve says what runs
    # A real client that hangs up is still logged (only the listener's own probe is not).
    with socket.create_connection(("127.0.0.1", fresh.smtp_port), timeout=10) as client:
        assert client.recv(1024).startswith(b"220")
    _wait_for_log(fresh, "connection lost")


def test_the_first_hour(fresh, outbox, browser, tmp_path):
    _, sent = outbox
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    admin = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()

    # 1. The first visit to the console offers to create the first administrator.
    admin.goto(f"{fresh.url}/console/")
    admin.wait_for_url("**/setup/")
    admin.locator("#id_username").fill("sam")
    admin.locator("#id_display_name").fill("Sam Taylor")
    admin.locator("#id_email").fill("sam@example.com")
    admin.locator("#id_password1").fill(PASSWORD)
    admin.locator("#id_password2").fill(PASSWORD)
    shot(admin, "01-first-administrator")
    admin.get_by_role("button", name="Create administrator and sign in").click()
    admin.wait_for_url("**/console/")
    header = admin.locator("header").inner_text()
    assert "Sam Taylor" in header
    for section in ("Live chats", "Email desk", "Analytics", "Studio", "Governance"):
        assert section.lower() in header.lower(), header
    shot(admin, "02-console")
    admin.get_by_role("button", name="Sign out").click()
    admin.wait_for_url("**/accounts/login/")
    assert admin.locator("h1").inner_text() == "Sign in to Parley"
    sign_in(admin, fresh.url, "sam", "/console/")

    # 2. A Site for the company's own website, another origin, open no hours (nobody is there).
    company = StaticSite(tmp_path)
    (tmp_path / "index.html").write_text(
        "<!doctype html><html lang='en'><head><title>Acme</title></head><body><h1>Acme Broadband</h1>"
        f'<script src="{fresh.url}/static/parley/widget.js" data-parley-host="{fresh.url}"'
        ' data-site="acme" async></script></body></html>'
    )
    try:
        admin.goto(f"{fresh.url}/admin/assistant/site/add/")
        admin.locator("#id_key").fill("acme")
        admin.locator("#id_name").fill("Acme Broadband")
        admin.locator("#id_allowed_origins").fill(company.url)
        admin.locator("#id_title").fill("Acme help")
        admin.locator("#id_opening_hours").fill("Mon-Fri 09:00-17:00")
        admin.locator("#id_reply_time").fill("within 2 hours")
        shot(admin, "03-site")
        admin.locator("input[name=_save]").click()
        admin.locator(".messagelist").wait_for()
        assert "was added successfully" in admin.locator(".messagelist").inner_text()
        # Sam leaves the console: nobody from the team is online now.

        # 3. A visitor on the company's site asks a question and gets a cited answer.
        visitor = browser.new_context(viewport={"width": 1100, "height": 820}).new_page()
        visitor.goto(company.url + "/index.html")
        visitor.locator(".parley-launcher").click()
        visitor.locator(".parley-title").filter(has_text="Acme help").wait_for()
        visitor.locator(".parley-input").fill("How long does a refund take?")
        visitor.locator(".parley-input").press("Enter")
        visitor.locator(".parley-source").first.wait_for(timeout=180_000)
        shot(visitor, "04-widget-answer")

        # 4. They ask for a person: nobody is online, so they leave their email address.
        visitor.locator(".parley-handoff").click()
        offer = visitor.get_by_role("group", name="Get an answer by email")
        offer.wait_for(timeout=30_000)
        assert "Nobody from our team is online right now." in offer.inner_text()
        assert "within 2 hours" in offer.inner_text()
        offer.get_by_label("Your email").fill(VISITOR)
        shot(visitor, "05-nobody-online")
        offer.get_by_role("button", name="Send", exact=True).click()
        visitor.get_by_text(f"answer at {VISITOR}", exact=False).first.wait_for(timeout=30_000)
        shot(visitor, "06-email-left")

        # 5. The conversation is a desk ticket, triaged and drafted by the worker; Sam answers it.
        admin.goto(f"{fresh.url}/console/desk/")
        reload_until(admin, f"text={VISITOR}", 120)
        shot(admin, "07-desk")
        admin.locator("table a[href^='/console/desk/']").first.click()
        admin.wait_for_url(re.compile(r"/console/desk/\d+/$"))
        reload_until(admin, "text=Approve and send", 240)
        shot(admin, "08-ticket")
        confirm = admin.get_by_label("I have checked the flagged sentences")
        if confirm.count():
            confirm.check()
        admin.get_by_role("button", name="Approve and send").click()
        deadline = time.monotonic() + 60
        while not sent and time.monotonic() < deadline:
            admin.wait_for_timeout(500)
        assert sent and sent[0][1] == [VISITOR], sent
        shot(admin, "09-sent")
    finally:
        company.close()

    # 6. The studio's site name (meta titles end in it), then a brief becomes an article with a
    # search-result snippet and a preview.
    admin.goto(f"{fresh.url}/admin/content/studiosettings/add/")
    admin.locator("#id_site_name").fill("Acme Broadband")
    admin.locator("input[name=_save]").click()
    admin.locator(".messagelist").wait_for()
    admin.goto(f"{fresh.url}/studio/")
    admin.locator("#id_topic").fill("Fixing slow Wi-Fi at home")
    admin.locator("#id_keyphrase").fill("slow wifi")
    admin.locator("#id_length").select_option("short")
    admin.locator("#id_with_images").uncheck()
    shot(admin, "10-studio-brief")
    admin.get_by_role("button", name="Write the article").click()
    admin.wait_for_url(re.compile(r"/studio/\d+/$"))
    shot(admin, "11-studio-writing")
    admin.locator("#edit-form").wait_for(timeout=300_000)
    shot(admin, "12-studio-article")
    assert admin.locator("#f-meta-title").input_value().endswith(" | Acme Broadband")
    snippet = admin.locator(".snippet-result")
    snippet.scroll_into_view_if_needed()
    assert "Acme Broadband" in snippet.inner_text()
    shot(admin, "13-studio-snippet")
    admin.locator("#preview").scroll_into_view_if_needed()
    assert admin.locator("#preview .preview-article h1").count() == 1
    shot(admin, "14-studio-preview")
    assert fresh.process.poll() is None

"""The widget's side of "nobody online" and of agents' display names, in headless Chromium with
the fake socket of tests/test_widget_render.py (what the widget draws and sends; the server side
is tests/test_no_one_online.py)."""

from __future__ import annotations

import pytest

from tests.test_widget_render import SHADOW, context, open_widget, push, sent, site  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

OFFER = {
    "type": "offline",
    "conversation": "3f0c1a9e-2b7d-4c1e-9a51-0d6f8e2b7c44",
    "open_now": False,
    "back_at": "2026-12-14T09:00:00+00:00",
    "back": "Monday at 09:00 (UTC)",
    "time_zone": "UTC",
    "reply_time": "within 2 hours",
    "ticket": None,
    "text": "Nobody from our team is online right now.",
}


def test_nobody_online_shows_when_we_are_back_and_takes_an_email_address(site, context):  # noqa: F811
    page = context.new_page()
    page.goto(site.page("offline"))
    open_widget(page)
    page.get_by_role("button", name="Talk to a person from our team").click()
    push(page, {"type": "conversation", "id": OFFER["conversation"]})
    push(page, OFFER)

    offer = page.locator(".parley-offline")
    text = offer.inner_text()
    assert "Nobody from our team is online right now." in text
    assert "We're back Monday at 09:00 (UTC)." in text and "We usually reply within 2 hours." in text
    # Asked before writing anything: the question field comes with the form.
    page.get_by_label("Your question").fill("Can I move my contract?")

    # A bad address: the server's error shows in the form, and what was typed stays.
    page.get_by_label("Your email").fill("jo@")
    page.get_by_role("button", name="Send", exact=True).click()
    frame = sent(page)[-1]
    assert frame == {
        "type": "email",
        "conversation": OFFER["conversation"],
        "email": "jo@",
        "text": "Can I move my contract?",
    }
    push(
        page,
        {
            "type": "error",
            "code": "bad_email",
            "message": "That does not look like an email address.",
            "for": "email",
        },
    )
    page.get_by_role("alert").filter(has_text="does not look like an email address").wait_for()
    assert page.get_by_label("Your email").input_value() == "jo@"
    assert page.get_by_label("Your question").input_value() == "Can I move my contract?"
    assert page.locator(".parley-error").count() == 0  # in the form, not as a chat error

    page.get_by_label("Your email").fill("jo@example.com")
    page.get_by_label("Your name (optional)").fill("Jo")
    page.get_by_role("button", name="Send", exact=True).click()
    assert sent(page)[-1]["email"] == "jo@example.com" and sent(page)[-1]["name"] == "Jo"
    push(page, {"type": "ticket", "conversation": OFFER["conversation"], "email": "jo@example.com",
                "reference": "PT-ABC234", "text": "Thanks, we'll answer at jo@example.com."})  # fmt: skip
    offer.filter(has_text="Thanks, we'll answer at jo@example.com.").wait_for()
    assert page.get_by_label("Your email").count() == 0
    assert "We'll answer you by email at jo@example.com." in page.locator(".parley-status").inner_text()
    assert page.locator(".parley-user").filter(has_text="Can I move my contract?").count() == 1

    # Asking again: no second form, it says where the answer will come.
    push(page, {**OFFER, "ticket": {"email": "jo@example.com", "reference": "PT-ABC234"}})
    assert (
        page.locator(".parley-offline")
        .last.inner_text()
        .endswith("We'll answer you by email at jo@example.com.")
    )
    assert page.get_by_label("Your email").count() == 0


def test_agents_appear_by_display_name_with_initials_and_typing(site, context):  # noqa: F811
    page = context.new_page()
    page.goto(site.page("names"))
    open_widget(page)
    push(page, {"type": "handoff", "state": "joined", "agent": "Maria Jones", "initials": "MJ"})
    page.locator(".parley-note", has_text="Maria Jones joined the chat").wait_for()
    push(page, {"type": "agent_typing", "agent": "Maria Jones", "initials": "MJ"})
    page.get_by_role("img", name="Maria Jones is typing").wait_for()
    push(page, {"type": "agent_message", "text": "Hello!", "agent": "Maria Jones", "initials": "MJ"})
    bubble = page.locator(".parley-agent").last
    assert bubble.locator(".parley-avatar").inner_text() == "MJ"
    assert bubble.locator(".parley-agent-name").inner_text() == "Maria Jones"
    assert page.locator(".parley-agent-typing").count() == 0  # the message replaces the dots
    # An older server without initials: the widget makes them.
    push(page, {"type": "agent_message", "text": "Still here.", "agent": "Sam Lee"})
    assert page.locator(".parley-agent").last.locator(".parley-avatar").inner_text() == "SL"
    assert page.evaluate(f"{SHADOW}.querySelector('.parley-avatar').getAttribute('aria-hidden')") == "true"

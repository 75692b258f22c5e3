"""Issue 20's walk, in Chromium on a real `serve`: an admin defines an action against the
company's order system (a local HTTP server standing in for it) in the admin; a visitor asks for
an order's status, is asked for the number, and gets the status from the system; they ask for a
person, and the agent takes over with a suggested reply that they insert, edit and send.
Screenshots in var/screenshots/actions/ (PARLEY_SCREENSHOTS overrides the parent folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO, sign_in
from tests.test_actions import API_KEY, OrderSystem

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = Path(os.environ.get("PARLEY_SCREENSHOTS", REPO / "var" / "screenshots")) / "actions"


def _shell(server, code: str) -> str:
    return server.manage("shell", "-c", code).stdout


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_visitor_gets_an_order_status_and_an_agent_takes_over_with_a_suggestion(live_parley, browser):
    orders = OrderSystem()
    orders.orders["ZX4471"] = (None, {"status": "on its way", "eta": "on Thursday"})
    _shell(
        live_parley,
        "from django.contrib.auth.models import Group, User;"
        "User.objects.filter(username__in=['root', 'maria']).delete();"
        "User.objects.create_superuser('root', password='correct horse battery staple');"
        "u = User.objects.create_user('maria', password='correct horse battery staple', is_staff=True,"
        " first_name='Maria', last_name='Jones'); u.groups.add(Group.objects.get_or_create(name='agent')[0])",
    )
    try:
        # The admin defines the action in the admin, as a new user would.
        admin = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        sign_in(admin, live_parley.url, "root", "/admin/answers/action/add/")
        admin.locator("#id_name").fill("Order status")
        admin.locator("#id_examples").fill(
            "Where is my order?\nWhat is the status of my order?\nWhen will my order arrive?"
        )
        admin.locator("#id_parameters").fill(
            json.dumps(
                [{"name": "order", "label": "your order number", "pattern": r"ZX\d{4}", "example": "ZX1234"}]
            )
        )
        admin.locator("#id_url").fill(f"{orders.url}/orders/{{order}}")
        admin.locator("#id_headers").fill(json.dumps({"X-Api-Key": "{secret}"}))
        admin.locator("#id_secret").fill(API_KEY)
        admin.locator("#id_reply_template").fill(
            "Your order {{ order }} is {{ result.status }} and should arrive {{ result.eta }}."
        )
        shot(admin, "01-define-action")
        admin.locator("input[name=_save]").click()
        admin.locator(".messagelist").wait_for()
        assert "was added successfully" in admin.locator(".messagelist").inner_text()

        # An agent is online (their console is open).
        agent = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        sign_in(agent, live_parley.url, "maria", "/console/")
        agent.get_by_text("Online: visitors can reach you").wait_for()

        # The visitor asks; the assistant asks for the number, then answers from the system.
        visitor = browser.new_context().new_page()
        visitor.goto(live_parley.url + "/")
        visitor.locator(".parley-launcher").click()
        visitor.locator(".parley-input").fill("Where is my order?")
        visitor.locator(".parley-input").press("Enter")
        visitor.locator(".parley-msg", has_text="What is your order number?").wait_for(timeout=120_000)
        visitor.locator(".parley-input").fill("It's ZX4471")
        visitor.locator(".parley-input").press("Enter")
        answer = visitor.locator(".parley-msg", has_text="Your order ZX4471 is on its way")
        answer.wait_for(timeout=60_000)
        assert "should arrive on Thursday" in answer.inner_text()
        assert orders.requests and orders.requests[-1][1] == "/orders/ZX4471"
        shot(visitor, "02-visitor-order-status")

        # They ask for a person; Maria opens the conversation, asks for a suggestion, inserts it,
        # edits it and sends it.
        visitor.locator(".parley-input").fill("How do I factory reset my router?")
        visitor.locator(".parley-input").press("Enter")
        visitor.locator(".parley-source").first.wait_for(timeout=120_000)
        visitor.locator(".parley-handoff").click()
        agent.locator(".queue-item", has_text="factory reset").first.click()
        agent.get_by_text("Before the handover", exact=False).first.wait_for(timeout=15_000)
        agent.locator("#suggest:not([disabled])").click()
        suggestion = agent.locator("#suggestion-text")
        suggestion.wait_for(timeout=60_000)
        suggested = suggestion.inner_text()
        assert suggested.strip()
        shot(agent, "03-agent-suggestion")
        agent.locator("#claim:not([disabled])").click()
        agent.locator("#insert").click()
        reply = agent.locator("#reply:not([disabled])")
        assert reply.input_value().strip() == suggested.strip()
        reply.fill("Hi, Maria here. " + reply.input_value())
        reply.press("Enter")
        sent = visitor.locator(".parley-agent").filter(has_text="Maria here")
        sent.wait_for(timeout=15_000)
        assert "Maria" in sent.inner_text()
        shot(visitor, "04-visitor-gets-the-reply")
        agent.locator("#close:not([disabled])").click()  # done: it leaves the queue for other tests
        agent.locator(".queue-item", has_text="factory reset").wait_for(state="detached", timeout=15_000)
    finally:
        orders.close()

"""A visitor's view: headless Chromium (Debian's package, driven by Playwright) on the demo site."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_visitor_opens_the_widget_asks_and_sees_a_verified_answer_with_its_source(
    live_parley, browser, tmp_path
):
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
    # The answer arrives sentence by sentence, each verified first (by default the sources'
    # own sentences: they arrive together, well within a second).
    assert lengths[-1] > 0, "no answer"
    assert "15 seconds" in answer.inner_text()  # the source's fact
    source = page.locator(".parley-source").first
    source.wait_for(state="visible")
    assert "router" in source.inner_text().lower()
    assert source.get_attribute("href").startswith(live_parley.url + "/kb/")
    page.screenshot(path=str(tmp_path / "widget.png"))
    # The page's own styles did not leak into the widget and vice versa.
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != ""
    page.close()


def _shell(server, code: str) -> str:
    return server.manage("shell", "-c", code).stdout


def test_widget_on_another_origin_answers_then_an_agent_takes_over(live_parley, browser, tmp_path):
    from tests.conftest import StaticSite, sign_in

    company = StaticSite(tmp_path)
    (tmp_path / "index.html").write_text(
        "<!doctype html><html lang='en'><head><title>Acme</title></head><body><h1>Acme Broadband</h1>"
        f'<script src="{live_parley.url}/static/parley/widget.js" data-parley-host="{live_parley.url}"'
        ' data-site="acme" async></script></body></html>'
    )
    _shell(
        live_parley,
        "from assistant.models import Site; from django.contrib.auth.models import Group, User;"
        "Site.objects.update_or_create(key='acme', defaults=dict(name='Acme',"
        f" allowed_origins='{company.url}', title='Acme help'));"
        "u = User.objects.create_user('ana', password='correct horse battery staple', is_staff=True,"
        " first_name='Ana'); u.groups.add(Group.objects.get_or_create(name='agent')[0])",
    )
    try:
        visitor = browser.new_context().new_page()
        visitor.goto(company.url + "/index.html")
        visitor.locator(".parley-launcher").click()
        visitor.locator(".parley-title").filter(has_text="Acme help").wait_for()  # the site's own look
        visitor.locator(".parley-input").fill("How long does a refund take?")
        visitor.locator(".parley-input").press("Enter")
        source = visitor.locator(".parley-source").first
        source.wait_for(timeout=180_000)
        assert "efund" in source.inner_text()

        # Ana has the console open (she is online), so asking for a person queues for her.
        agent = browser.new_context().new_page()
        sign_in(agent, live_parley.url, "ana", "/console/")
        agent.locator("#connection").filter(has_text="Online").wait_for(timeout=15_000)
        visitor.locator(".parley-handoff").click()  # "Talk to a person"
        agent.locator(".queue-item", has_text="refund").first.click()
        agent.locator("#claim:not([disabled])").click()
        agent.locator("#reply:not([disabled])").fill("Hello, this is Ana. Happy to help with your refund.")
        agent.locator("#reply").press("Enter")

        reply = visitor.locator(".parley-agent").filter(has_text="Happy to help")
        reply.wait_for(timeout=15_000)
        assert "Ana" in reply.inner_text()

        # Ana corrects the assistant's answer: it becomes a training example for fine-tuning.
        answer = agent.locator(".msg.assistant").first
        answer.locator(".correct-open").click()
        answer.locator("textarea").fill("Card refunds arrive within 5 working days of approval [1].")
        answer.locator("button", has_text="Save for training").click()
        answer.locator(".correct-status").filter(has_text="Saved for training").wait_for(timeout=15_000)
        kept = _shell(
            live_parley,
            "from assistant.models import TrainingExample as T;"
            "print(list(T.objects.filter(source='chat').values_list('answer', flat=True)))",
        )
        assert "5 working days of approval" in kept
    finally:
        company.close()


def test_the_widget_survives_a_server_restart_mid_conversation(live_parley, browser):
    page = browser.new_context().new_page()
    page.goto(live_parley.url + "/")
    page.locator(".parley-launcher").click()
    page.locator(".parley-input").fill("What are your opening hours?")
    page.locator(".parley-input").press("Enter")
    page.locator(".parley-bot .parley-source").first.wait_for(timeout=180_000)
    conversation = page.evaluate("localStorage.getItem('parley:conversation:default')")
    assert conversation

    live_parley.stop()
    live_parley.start()

    # The widget reconnects by itself, resumes, and the conversation goes on.
    page.locator(".parley-input").fill("And on Sundays?")
    page.locator(".parley-input").press("Enter")
    page.locator(".parley-user").filter(has_text="And on Sundays?").wait_for(timeout=60_000)
    page.locator(".parley-bot").nth(1).locator(".parley-source").first.wait_for(timeout=180_000)
    assert page.evaluate("localStorage.getItem('parley:conversation:default')") == conversation
    assert page.locator(".parley-user").filter(has_text="opening hours").count() == 1  # history kept

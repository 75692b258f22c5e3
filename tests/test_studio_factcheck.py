"""The studio's fact check, and what it does about text that talks about itself and links the
sources do not contain, through the studio's public interfaces: the generation task body, the
API, the item page and its forms (Django's test client), and the page in headless Chromium.

The chat model is a test double here (ScriptedWriter): these tests are about what the studio does
with what a model writes (strip its talk about itself, keep only links the sources contain, check
each claim against the sources, show the check and let an editor override it), and no real
model writes a given wrong price on cue. Retrieval over the demo knowledge base, the answer
path and its output guard, the embedder, the verifier, the checks and the database are real.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from content.generation import generate, regenerate_part
from content.models import ContentItem
from inference.base import Generation, TextGenerator
from tests.conftest import bearer, sign_in
from tests.test_browser import _shell

pytestmark = pytest.mark.slow
# Not module-wide: the browser test uses the live server's database, and setting up the test
# database under Playwright's running event loop is refused.
uses_db = pytest.mark.django_db(transaction=True)

SUPPORTED = "A restart fixes most temporary problems and keeps all your settings."  # router-reset.md
WRONG_PRICE = "A factory reset costs £39 at a Brightline shop."  # the demo documents name no £39

# What the double writes, by a phrase of the task it is given (content/generation.py's tasks),
# with the framing and links small models add.
REPLIES = [
    ("section headings", "Here are 3 section headings:\nRestart first\nFactory reset\nLogging back in"),
    ("introduction", f"Here is the introduction: {SUPPORTED} {WRONG_PRICE}"),
    (
        "Write the section",
        "The article will feature the reset steps. Press and hold the pinhole button for 15 seconds, "
        "until the status light flashes white rapidly. Then log in at "
        "[the router page](http://192.168.1.1) or [claim a prize](https://prizes.example/win).",
    ),
    ("under 150 characters", "When to restart your router and when a factory reset is the answer."),
    (
        "List 3 questions",
        "How long does a reset take?\nWill I lose my settings?\nWhat is the admin password?",
    ),
    (
        "Answer in two sentences",
        "I hope this helps! The router restarts on its own, which takes up to 5 minutes.",
    ),
]
# A regenerated introduction (sampled, so it differs): every claim in the sources.
REGENERATED_INTRO = f"{SUPPORTED} Always try a restart first."


class ScriptedWriter(TextGenerator):
    """A test double for the chat model (see the module docstring): the reply for its task,
    streamed word by word as a model streams."""

    model_version = "scripted-writer"

    def stream(self, messages, params) -> Generation:
        task = messages[-1]["content"].split("Task:", 1)[-1]
        reply = next(text for phrase, text in REPLIES if phrase in task)
        if params.seed is not None and "introduction" in task:
            reply = REGENERATED_INTRO
        generation = Generation()
        generation.deltas = self._deltas(reply)
        return generation

    async def _deltas(self, text: str):
        for piece in re.findall(r"\S+\s*", text):
            yield piece


BRIEF = {
    "topic": "Restarting or factory resetting your router",
    "keyphrase": "router reset",
    "length": "short",
    "with_images": False,
}


@pytest.fixture
def signed_in(editor):  # the editor persona of tests/conftest.py
    client = Client()
    client.force_login(editor)
    return client


@pytest.fixture
def generated(settings, tmp_path, demo_kb, client, editor):
    settings.DATA_DIR = tmp_path
    settings.TEXT_GENERATOR_BACKEND = f"{__name__}.ScriptedWriter"
    settings.CONTENT_RETRIEVAL_K = 6  # the router-reset page's passages, the link's one among them
    response = client.post("/api/content/briefs", BRIEF, content_type="application/json", **bearer(editor))
    assert response.status_code == 202, response.content
    item = generate(response.json()["id"])
    assert item is not None and item.generation == "done", item and item.error
    return ContentItem.objects.get(pk=item.pk)


def by_id(checks: list[dict]) -> dict[str, dict]:
    return {c["id"]: c for c in checks}


def claims_of(item: ContentItem, part: str) -> dict[str, str]:
    """A part's claims: sentence -> verdict."""
    return {r["text"]: r["verdict"] for r in item.support if r["part"] == part and r["verdict"] != "neutral"}


def panel(signed_in: Client, item: ContentItem) -> str:
    """The fact-check panel of the item's page, as HTML."""
    page = signed_in.get(reverse("studio-item", args=[item.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    return html.split('id="factcheck"', 1)[1].split("</section>", 1)[0]


def panel_items(html: str) -> list[str]:
    return re.findall(r"<li class=\"claim [^\"]+\">.*?</li>", html, re.S)


@uses_db
def test_generation_strips_self_talk_keeps_only_source_links_and_checks_every_claim(
    generated, client, editor
):
    item = generated

    # The framing the model wrote is gone; what it framed is kept.
    assert [s["heading"] for s in item.sections] == ["Restart first", "Factory reset", "Logging back in"]
    assert item.intro == f"{SUPPORTED} {WRONG_PRICE}"
    section = item.sections[0]["text"]
    assert section.startswith("Press and hold the pinhole button") and "article will" not in section
    assert [pair["answer"] for pair in item.faq] == [
        "The router restarts on its own, which takes up to 5 minutes."
    ] * 3
    assert by_id(item.checks)["self_talk"]["status"] == "pass"

    # The output guard (answers/guard.py) keeps a link the sources contain and unlinks the other.
    assert "[the router page](http://192.168.1.1)" in section
    assert "prizes.example" not in section and "claim a prize" in section

    # Every part is fact-checked: the copied sentence is supported by its passage, the price is not.
    assert claims_of(item, "intro") == {SUPPORTED: "supported", WRONG_PRICE: "unsupported"}
    price = next(r for r in item.support if r["text"] == WRONG_PRICE)
    assert price["unknown"] == ["39"]
    supported = next(r for r in item.support if r["text"] == SUPPORTED)
    assert supported["source"] is not None and SUPPORTED in supported["evidence"]
    assert {r["part"] for r in item.support} >= {"meta_description", "intro", "s1", "s2", "s3", "faq-1"}
    facts = by_id(item.checks)["facts"]
    assert facts["status"] == "fail" and facts["blocking"]
    assert "“A factory reset costs £39 at a Brightline shop.” (not in the sources: 39)" in facts["reason"]
    # The API gives the same fact check.
    assert client.get(f"/api/content/items/{item.pk}", **bearer(editor)).json()["support"] == item.support


@uses_db
def test_the_page_shows_the_unsupported_price_and_an_override_with_a_reason_approves(generated, signed_in):
    item = generated

    html = panel(signed_in, item)
    price = next(li for li in panel_items(html) if WRONG_PRICE in li)
    assert "Unsupported" in price and "Not in the sources: 39" in price and "in the introduction" in price
    backed = next(li for li in panel_items(html) if SUPPORTED in li and "claim-supported" in li)
    assert "[1] Restarting or factory resetting your router" in backed

    # The failing facts check blocks approval until an editor gives a reason.
    move = reverse("studio-transition", args=[item.pk])
    signed_in.post(move, {"to": "in_review"})
    failing = [c["id"] for c in ContentItem.objects.get(pk=item.pk).checks if c["status"] == "fail"]
    assert "facts" in failing
    others = {f"override_{c}": "Reviewed by hand." for c in failing if c != "facts"}
    refused = signed_in.post(move, {"to": "approved", **others}, follow=True)
    assert "Claims supported by the sources" in refused.content.decode()
    assert ContentItem.objects.get(pk=item.pk).state == "in_review"

    signed_in.post(
        move, {"to": "approved", **others, "override_facts": "The shop price is on our price list."}
    )
    approved = ContentItem.objects.get(pk=item.pk)
    assert approved.state == "approved"
    assert approved.overrides["facts"]["reason"] == "The shop price is on our price list."


@uses_db
def test_a_saved_edit_is_checked_again_and_typed_self_talk_fails(generated, signed_in):
    item = generated
    sections_before = [r for r in item.support if r["part"] == "s1"]
    intro = (
        "In this article we will explain resets. "
        f"{SUPPORTED} The <script>alert(1)</script> plan costs £29 a month."
    )

    signed_in.post(reverse("studio-save", args=[item.pk]), {"revision": item.revision, "intro": intro})

    saved = ContentItem.objects.get(pk=item.pk)
    assert saved.intro == intro and saved.revision == item.revision + 1
    assert claims_of(saved, "intro")["The <script>alert(1)</script> plan costs £29 a month."] == "unsupported"
    assert WRONG_PRICE not in claims_of(saved, "intro")
    assert [r for r in saved.support if r["part"] == "s1"] == sections_before  # unchanged, kept
    talk = by_id(saved.checks)["self_talk"]
    assert talk["status"] == "fail" and "“In this article we will explain resets.”" in talk["reason"]
    # In the panel as text, never as markup.
    html = panel(signed_in, saved)
    assert "plan costs £29 a month" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html


@uses_db
def test_a_regenerated_part_is_checked_again(generated, editor):
    item = generated

    regenerate_part(item, "intro", user=editor)

    item = ContentItem.objects.get(pk=item.pk)
    assert item.intro == REGENERATED_INTRO
    assert claims_of(item, "intro") == {SUPPORTED: "supported", "Always try a restart first.": "supported"}
    assert WRONG_PRICE not in by_id(item.checks)["facts"]["reason"]


@pytest.mark.browser
def test_an_editor_sees_the_fact_check_in_the_browser(live_parley, browser):
    # An item written from the demo's plans page, fact-checked by the server's own code.
    out = _shell(
        live_parley,
        "from django.contrib.auth.models import Group, User;"
        "from content.models import Brief, ContentItem;"
        "from content.quality import run_checks;"
        "from retrieval.models import Document;"
        "u = User.objects.create_user('fay', password='correct horse battery staple', is_staff=True);"
        "u.groups.add(Group.objects.get_or_create(name='editor')[0]);"
        "d = Document.objects.get(title__icontains='plans and speeds');"
        "b = Brief.objects.create(topic='Choosing a broadband plan', keyphrase='broadband plan',"
        " with_images=False);"
        "i = ContentItem.objects.create(brief=b, generation='done', title=b.topic, revision=1,"
        " intro='There are no data caps on any Brightline plan. The Stream 500 plan costs £29 a month.',"
        " retrieved=[{'chunk': c.pk, 'document': d.pk, 'title': d.title, 'score': 1.0, 'source': 1}"
        " for c in d.chunks.all()]);"
        "run_checks(i); print('ITEM', i.pk, d.title)",
    )
    item_id, title = re.search(r"ITEM (\d+) (.+)", out).groups()
    page = browser.new_context().new_page()
    sign_in(page, live_parley.url, "fay", f"/studio/{item_id}/")

    factcheck = page.locator("#factcheck")
    unsupported = factcheck.locator("li.claim-unsupported")
    assert "The Stream 500 plan costs £29 a month." in unsupported.inner_text()
    assert "Unsupported" in unsupported.inner_text() and "Not in the sources: 29" in unsupported.inner_text()
    supported = factcheck.locator("li.claim-supported")
    assert "There are no data caps on any Brightline plan." in supported.inner_text()
    assert f"[1] {title}" in supported.inner_text() and "Supported" in supported.inner_text()
    facts = page.locator("li.check").filter(has_text="Claims supported by the sources")
    assert "check-fail" in facts.get_attribute("class") and "blocks approval" in facts.inner_text()

"""The item page's previews and its "still writing" guard: the review steps wait while the model
writes (the page disables them and says why; the page's form post and the JSON API answer 409 and
change nothing), the article is previewed as it will be published (the export's renderer:
Markdown without raw HTML, then nh3, so hostile text never becomes markup), the search-result
snippet is cut where a search engine cuts it, and the workspace's site name (StudioSettings,
kept by admins) ends the meta titles the generation writes.

Items are made with the ORM (no model runs) except in the last test, which runs the real
generation path as tests/test_content_studio.py does.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from content import snippet
from content.article import snapshot
from content.generation import meta_title
from content.models import (
    Brief,
    ContentImage,
    ContentItem,
    Regeneration,
    Revision,
    StateChange,
    StudioSettings,
)
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(editor):
    client = Client()
    client.force_login(editor)
    return client


def make_item(state=ContentItem.State.DRAFT, **fields) -> ContentItem:
    brief = Brief.objects.create(topic="Fixing slow Wi-Fi at home", keyphrase="slow wifi", length="short")
    values = {
        "generation": ContentItem.Generation.DONE,
        "progress": 100,
        "title": "Fixing slow Wi-Fi at home",
        "meta_title": "Fixing slow Wi-Fi at home | Brightline",
        "meta_description": "Slow wifi at home? Here is what to try first.",
        "slug": "slow-wifi",
        "intro": "Slow wifi is usually fixable in **minutes**.",
        "sections": [
            {
                "id": "s1",
                "heading": "Quick fixes",
                "text": "Try these:\n\n- Restart the router\n- Move it up high",
            },
            {
                "id": "s2",
                "heading": "When to call us",
                "text": "If nothing helps, [contact support](/support/).",
            },
        ],
        "faq": [{"question": "Does a restart help?", "answer": "Often, yes."}],
        "image_prompts": [{"prompt": "A router on a shelf", "alt": "A router", "size": "square"}],
        "checks": [],
        "revision": 1,
        **fields,
    }
    item = ContentItem.objects.create(brief=brief, state=state, **values)
    Revision.objects.create(item=item, number=1, fields=snapshot(item))
    return item


def page(client, item, status=200) -> str:
    response = client.get(reverse("studio-item", args=[item.pk]))
    assert response.status_code == status
    return response.content.decode()


def button(html: str, label: str) -> str:
    """The <button ...> tag whose text is `label`."""
    found = re.search(r"<button[^>]*>" + re.escape(label) + "</button>", html)
    assert found, label
    return found.group(0)


def transition_view(client, item, to, **data):
    return client.post(reverse("studio-transition", args=[item.pk]), {"to": to, **data})


def transition_api(client, editor, item, to):
    return client.post(
        f"/api/content/items/{item.pk}/transition",
        {"to": to},
        content_type="application/json",
        **bearer(editor),
    )


# --- Still writing: the review steps wait ----------------------------------------------------------


def test_submit_is_disabled_and_refused_while_the_article_is_written(signed_in, editor, client):
    item = make_item(generation=ContentItem.Generation.RUNNING, progress=40, step="FAQ")
    html = page(signed_in, item)
    submit = button(html, "Submit for review")
    assert " disabled" in submit and 'aria-describedby="still-writing"' in submit
    assert "Still writing: the model is writing the article (now: FAQ)." in html

    refused = transition_view(signed_in, item, "in_review")
    assert refused.status_code == 409
    assert "Still writing: the model is writing the article" in refused.content.decode()
    api = transition_api(client, editor, item, "in_review")
    assert api.status_code == 409
    assert api.json()["error"]["code"] == "still_writing"
    assert api.json()["error"]["message"].startswith("Still writing:")
    assert ContentItem.objects.get(pk=item.pk).state == "draft" and not StateChange.objects.exists()
    detail = client.get(f"/api/content/items/{item.pk}", **bearer(editor)).json()
    assert detail["still_writing"].startswith("Still writing:")

    # Done: the button is active and the move goes through.
    ContentItem.objects.filter(pk=item.pk).update(generation=ContentItem.Generation.DONE, progress=100)
    html = page(signed_in, item)
    assert " disabled" not in button(html, "Submit for review") and "Still writing" not in html
    moved = transition_view(signed_in, item, "in_review")
    assert moved.status_code == 302 and ContentItem.objects.get(pk=item.pk).state == "in_review"


def test_approving_and_publishing_wait_while_a_part_is_rewritten(signed_in, editor, client):
    item = make_item(state=ContentItem.State.IN_REVIEW)
    job = Regeneration.objects.create(item=item, part="intro", status=Regeneration.Status.RUNNING)
    html = page(signed_in, item)
    assert " disabled" in button(html, "Approve")
    assert "Still writing: the model is rewriting the introduction." in html
    assert " disabled" not in button(html, "Request changes")  # a reviewer may still say what to change

    assert transition_view(signed_in, item, "approved").status_code == 409
    assert transition_api(client, editor, item, "approved").json()["error"]["code"] == "still_writing"
    assert ContentItem.objects.get(pk=item.pk).state == "in_review"
    changes = transition_view(signed_in, item, "changes_requested", reason="Shorter, please.")
    assert changes.status_code == 302
    assert ContentItem.objects.get(pk=item.pk).state == "changes_requested"

    ContentItem.objects.filter(pk=item.pk).update(state=ContentItem.State.APPROVED)
    assert " disabled" in button(page(signed_in, item), "Publish")
    assert transition_api(client, editor, item, "published").status_code == 409

    # A regeneration that lost its worker long ago (regeneration.STALE_AFTER) holds nothing up.
    Regeneration.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert " disabled" not in button(page(signed_in, item), "Publish")
    assert transition_api(client, editor, item, "published").status_code == 200


def test_a_move_the_state_forbids_still_says_so_while_writing(client, editor):
    """The state's refusal comes first: a draft cannot be approved, writing or not."""
    item = make_item(generation=ContentItem.Generation.QUEUED)
    refused = transition_api(client, editor, item, "approved")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"


# --- The article preview -----------------------------------------------------------------------------


def preview_of(html: str) -> str:
    start = html.index('<article class="preview-article"')
    return html[start : html.index("</article>", start)]


def test_the_preview_renders_the_article_as_it_will_be_published(signed_in):
    item = make_item()
    chosen = ContentImage.objects.create(
        item=item, slot=0, prompt="A router", alt="A router on a shelf", seed=1, width=64, height=64,
        status=ContentImage.Status.DONE, chosen=True, path="content/images/x.png",
    )  # fmt: skip
    shown = preview_of(page(signed_in, item))
    assert "<h1>Fixing slow Wi-Fi at home</h1>" in shown
    assert "<strong>minutes</strong>" in shown
    assert "<h2>Quick fixes</h2>" in shown and "<li>Restart the router</li>" in shown and "<ul>" in shown
    assert '<a href="/support/" rel="noopener">contact support</a>' in shown
    assert "<h2>FAQ</h2>" in shown and "<h3>Does a restart help?</h3>" in shown
    assert f'<img src="/api/content/images/{chosen.pk}.png" alt="A router on a shelf"' in shown
    assert "<figcaption>AI-generated image</figcaption>" in shown


def test_the_preview_says_which_images_are_not_chosen_yet(signed_in):
    html = page(signed_in, make_item())
    assert "No image chosen yet for image 1" in html and "<img" not in preview_of(html)


def test_the_preview_waits_for_the_article(signed_in):
    html = page(signed_in, make_item(generation=ContentItem.Generation.RUNNING))
    assert "The preview appears when the article is written." in html


class _Markup(HTMLParser):
    """What in a page would run: script elements, event-handler attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script" and not dict(attrs).get("src"):
            self.problems.append("inline <script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}>")
            if name in {"href", "src", "action", "formaction"} and (value or "").strip().lower().startswith(
                ("javascript:", "vbscript:", "data:")
            ):
                self.problems.append(f"<{tag} {name}={value}>")


HOSTILE = [
    "<script>alert('body')</script>",
    '<img src=x onerror="alert(1)">',
    "[click me](javascript:alert(1))",
    '<a href="javascript:alert(2)">raw link</a>',
    "![pic](javascript:alert(3))",
    "<iframe src=//evil.example></iframe>",
]


def test_hostile_markup_in_the_article_never_reaches_the_page_as_markup(signed_in):
    text = "\n\n".join(HOSTILE)
    item = make_item(
        title="Title <script>alert('title')</script>",
        intro=text,
        sections=[{"id": "s1", "heading": "H <b onmouseover=alert(1)>x</b>", "text": text}],
        faq=[{"question": "Q <script>alert('q')</script>?", "answer": text}],
    )
    html = page(signed_in, item)
    parser = _Markup()
    parser.feed(html)
    assert parser.problems == []
    shown = preview_of(html)
    for raw in ("<script", "<img src=x", "<iframe", '<a href="javascript'):
        assert raw not in shown, raw
    # Shown as the text it is, escaped (the parser above found no handler or URL that would run).
    assert "<p>&lt;script&gt;alert('body')&lt;/script&gt;</p>" in shown
    assert '&lt;img src=x onerror="alert(1)"&gt;' in shown
    assert "[click me](javascript:alert(1))" in shown  # markdown-it refuses the link: plain text
    assert "<h1>Title &lt;script&gt;" in shown


# --- The search-result snippet -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("Short title", 60, "Short title"),
        ("  spaced \n  out  ", 60, "spaced out"),
        ("x" * 60, 60, "x" * 60),  # exactly the limit: not cut
        ("one two three four", 12, "one two…"),  # cut after the last whole word
        ("one two, three", 10, "one two…"),  # no dangling comma before the "…"
        ("one two | Brightline", 12, "one two…"),  # nor a dangling separator
        ("abcdefghijklmnop", 8, "abcdefg…"),  # one long word: cut mid-word
        ("one two three", 9, "one two…"),  # the word ends exactly at the cut: kept whole
        ("", 60, ""),
    ],
)
def test_truncate_cuts_as_a_search_engine_does(text, limit, shown):
    assert snippet.truncate(text, limit) == shown
    assert len(snippet.truncate(text, limit)) <= limit


def test_the_snippet_cuts_the_title_and_description_where_google_does():
    title = "How to fix slow wifi at home: restart, move the router, pick a channel | Brightline"
    description = "Slow wifi at home? " + "Restart the router, then move it up high and away from walls. " * 4
    shown = snippet.snippet(
        title="ignored",
        meta_title=title,
        meta_description=description,
        slug="slow-wifi",
        site_name="Brightline",
        site_url="https://www.brightline.example/help/",
    )
    assert shown.title == "How to fix slow wifi at home: restart, move the router…"
    assert len(shown.title) <= snippet.TITLE_CHARS and shown.title_cut and shown.title_chars == len(title)
    assert shown.description.endswith("…") and len(shown.description) <= snippet.DESCRIPTION_CHARS
    assert 150 <= len(shown.description) and shown.description_cut
    assert shown.url == "https://www.brightline.example › help › slow-wifi"
    # No meta title: the page's title shows; nothing too long is cut.
    plain = snippet.snippet(
        title="A title", meta_title="", meta_description="Short.", slug="", site_name="", site_url=""
    )
    assert (plain.title, plain.title_cut, plain.description_cut) == ("A title", False, False)
    assert plain.url == "https://www.example.com"


def test_the_snippet_sits_beside_the_meta_fields(signed_in):
    long_title = "A meta title that is far too long for a search result, it goes on and on | Brightline"
    html = page(signed_in, make_item(meta_title=long_title))
    box = html[html.index('id="snippet"') : html.index("data-snippet-title-count")]
    assert 'data-title-chars="60"' in html and 'data-description-chars="158"' in html
    assert snippet.truncate(long_title, 60) in box and "https://www.example.com › slow-wifi" in box
    assert f"Title: {len(long_title)} of about 60 characters, cut" in html
    assert 'class="badge badge-warn" data-snippet-title-count' in html
    assert html.index('id="f-meta-title"') < html.index('id="snippet"') < html.index('id="f-intro"')


# --- The workspace's site name -------------------------------------------------------------------------


def test_the_site_name_defaults_to_the_deployment_setting_and_ends_new_meta_titles(settings):
    settings.CONTENT_SITE_NAME = "Parley"
    assert not StudioSettings.objects.exists()
    assert meta_title("Slow wifi") == "Slow wifi | Parley"
    assert not StudioSettings.objects.exists()  # reading it writes nothing
    StudioSettings.objects.create(pk=1, site_name="  Brightline  Broadband ")
    assert meta_title("Slow wifi") == "Slow wifi | Brightline Broadband"
    StudioSettings.objects.filter(pk=1).update(site_name="")
    assert meta_title("Slow wifi") == "Slow wifi"  # no site name: no suffix


def test_admins_keep_the_site_settings_in_the_admin_and_editors_see_them(signed_in, client):
    admin = User.objects.create_superuser("root", password="correct horse battery staple")
    client.force_login(admin)
    add = reverse("admin:content_studiosettings_add")
    assert client.get(add).status_code == 200
    saved = client.post(add, {"site_name": "Brightline", "site_url": "https://www.brightline.example/"})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert StudioSettings.current().pk == 1 and StudioSettings.current().site_name == "Brightline"
    assert client.get(add).status_code == 403  # one row: no second one
    bad = client.post(
        reverse("admin:content_studiosettings_change", args=[1]),
        {"site_name": "Brightline", "site_url": "javascript:alert(1)"},
    )
    assert bad.status_code == 200 and StudioSettings.current().site_url == "https://www.brightline.example/"

    item = make_item(meta_title="Old title | Parley")
    html = page(signed_in, item)
    assert "Site: Brightline at https://www.brightline.example/." in html
    assert "https://www.brightline.example › slow-wifi" in html
    assert "An admin can change these." in html  # an editor has no admin rights
    assert ContentItem.objects.get(pk=item.pk).meta_title == "Old title | Parley"  # not rewritten
    assert reverse("admin:content_studiosettings_changelist") in page(client, item)

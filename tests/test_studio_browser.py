"""The studio as an editor uses it, in headless Chromium against `manage.py serve` (its embedded
Celery worker writes the article with the real chat model): create a brief, watch the progress,
edit a section, comment, regenerate a part, see a failing check, fix it, approve the rest with
reasons, export."""

from __future__ import annotations

import re

import pytest

from tests.conftest import sign_in
from tests.test_browser import _shell

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_an_editor_takes_a_brief_to_an_exported_article(live_parley, browser):
    _shell(
        live_parley,
        "from django.contrib.auth.models import Group, User;"
        "u = User.objects.create_user('edna', password='correct horse battery staple', is_staff=True);"
        "u.groups.add(Group.objects.get_or_create(name='editor')[0])",
    )
    page = browser.new_context().new_page()
    sign_in(page, live_parley.url, "edna", "/studio/")

    # A brief, with a script tag typed into it: it must stay text everywhere.
    page.locator("#id_topic").fill("Fixing slow Wi-Fi <script>window.pwned=1</script>")
    page.locator("#id_keyphrase").fill("slow wifi")
    page.locator("#id_length").select_option("short")
    page.locator("#id_with_images").uncheck()
    page.get_by_role("button", name="Write the article").click()
    page.wait_for_url(re.compile(r"/studio/\d+/$"))

    # Progress shows while the worker writes; the page reloads into the editor when done.
    page.locator("#edit-form").wait_for(timeout=240_000)
    assert page.evaluate("window.pwned") is None
    assert "<script>window.pwned=1</script>" in page.locator("#f-title").input_value()

    # Edit the first section (and a meta description without the keyphrase) and save.
    first_text = page.locator("textarea[name=section_text]").first
    first_text.fill("Restart your router first: slow wifi often comes from a router that has run for weeks.")
    page.locator("#f-meta-description").fill("Tips for a faster home network.")
    page.get_by_role("button", name="Save as a new revision").click()
    page.locator(".messages").wait_for()
    assert "revision" in page.locator(".messages").inner_text().lower()

    # Comment on that section.
    comments = page.locator(".comments").first
    comments.locator("summary").click()
    comments.locator("textarea").fill("Add the 5 GHz tip here.")
    comments.get_by_role("button", name="Add comment").click()
    page.locator(".comment .text").filter(has_text="Add the 5 GHz tip here.").wait_for()

    # Regenerate the introduction: the worker rewrites it while the page says so, then the page
    # reloads with the new revision.
    page.get_by_role("button", name="Regenerate the introduction").click()
    page.locator(".messages", has_text="Regenerating the introduction").wait_for()
    page.locator("#regeneration[data-status=done], #regeneration[data-status=failed]").wait_for(
        timeout=240_000
    )
    assert page.locator("#regeneration").get_attribute("data-status") == "done"
    assert "The introduction" in page.locator("#regeneration").inner_text()

    # The failing check says why; the editor fixes the meta description and it passes.
    meta_check = page.locator("li.check").filter(has_text="Keyphrase in meta description")
    assert "check-fail" in meta_check.get_attribute("class") and "blocks approval" in meta_check.inner_text()
    page.locator("#f-meta-description").fill(
        "How to fix slow wifi at home: restart, move the router, use 5 GHz."
    )
    page.get_by_role("button", name="Save as a new revision").click()
    page.locator(".messages").wait_for()
    assert "check-pass" in page.locator("li.check").filter(
        has_text="Keyphrase in meta description"
    ).get_attribute("class")

    # Submit, then approve with a written reason for each check still failing.
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_role("button", name="Approve").wait_for()
    for field in page.locator("input[name^=override_]").all():
        field.fill("A short piece on purpose; reviewed by hand.")
    page.get_by_role("button", name="Approve").click()
    page.get_by_role("button", name="Publish").wait_for()

    # Export: Markdown with front matter, the topic kept as text.
    markdown = page.request.get(
        live_parley.url + page.locator("a", has_text="md").first.get_attribute("href")
    )
    assert markdown.ok and markdown.text().startswith("---")
    assert "slow wifi" in markdown.text().lower()
    html = page.request.get(
        live_parley.url + page.locator("a", has_text="html").first.get_attribute("href")
    ).text()
    assert "<script>window.pwned" not in html and "FAQPage" in html


def test_the_search_result_preview_follows_the_meta_fields_as_they_are_typed(live_parley, browser):
    item_id = _shell(
        live_parley,
        "from django.contrib.auth.models import Group, User; from content.models import Brief, ContentItem;"
        "u = User.objects.create_user('sam', password='correct horse battery staple', is_staff=True);"
        "u.groups.add(Group.objects.get_or_create(name='editor')[0]);"
        "b = Brief.objects.create(topic='Router lights', keyphrase='router lights');"
        "i = ContentItem.objects.create(brief=b, generation='done', progress=100, title='Router lights',"
        " meta_title='Router lights | Parley', meta_description='What the lights mean.',"
        " slug='router-lights', revision=1);"
        "print(i.pk)",
    ).split()[-1]
    page = browser.new_context().new_page()
    sign_in(page, live_parley.url, "sam", f"/studio/{item_id}/")
    snippet = page.locator("#snippet")
    assert snippet.locator("[data-snippet-title]").inner_text() == "Router lights | Parley"

    # Typing redraws it at once (the input events are handled synchronously).
    page.locator("#f-meta-title").fill("What the lights on your router mean")
    assert snippet.locator("[data-snippet-title]").inner_text() == "What the lights on your router mean"
    count = snippet.locator("[data-snippet-title-count]")
    assert count.inner_text().startswith("Title: 35 of about 60 characters") and "px" in count.inner_text()
    assert "badge-ok" in count.get_attribute("class")

    # Too long: cut with "…" where a search engine cuts it, and the counter says so.
    page.locator("#f-meta-title").fill(
        "What every blinking light on your home router means, and what to do about each one"
    )
    shown = snippet.locator("[data-snippet-title]").inner_text()
    assert shown.endswith("…") and len(shown) <= 60 and shown.startswith("What every blinking light")
    assert count.inner_text().endswith(", cut") and "badge-warn" in count.get_attribute("class")

    page.locator("#f-meta-description").fill("x" * 200)
    assert snippet.locator("[data-snippet-description]").inner_text() == "x" * 157 + "…"
    page.locator("#f-slug").fill("Router Lights Explained")
    assert snippet.locator("[data-snippet-url]").inner_text().endswith("› router-lights-explained")

    # What is typed stays text.
    page.locator("#f-meta-title").fill("<img src=x onerror=window.pwned=1>")
    assert snippet.locator("[data-snippet-title]").inner_text() == "<img src=x onerror=window.pwned=1>"
    assert page.evaluate("window.pwned") is None

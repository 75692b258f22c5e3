"""The content studio's staff pages at /studio/: the dashboard (filters, counts, the reviewer
dashboard, the new-brief form) and one item's page (edit form, conflicts, regeneration,
comments, checks and overrides, state moves, assignment, images, revisions, history), driven
through Django's test client as an editor's browser would (no JavaScript).

Briefs, items and image candidates are made directly with the ORM: neither the language model
nor the image model runs here. The model-driven flow (generation, regeneration, rendering
images, the JSON API) is tested in tests/test_content_studio.py; here queueing a task
(`core.jobs.enqueue`) and `regenerate_part` are patched (autospec) and the tests check what the
page does with them. Saving an edit runs the real SEO checks (content/quality.py), with the small
embedding model the near-duplicate check uses, loaded once per test session.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from content.article import snapshot
from content.errors import StudioError
from content.models import Brief, Comment, ContentImage, ContentItem, Regeneration, Revision, StateChange
from core.roles import EDITOR
from inference.base import InferenceError
from tests.conftest import _user

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

SECTIONS = [
    {"id": "s1", "heading": "Why Wi-Fi slows down", "text": "Walls and distance weaken the signal."},
    {"id": "s2", "heading": "Quick fixes", "text": "Restart the router.\nMove it up high."},
]
FAQ = [{"question": "Does a restart help?", "answer": "Often, yes."}]
CHECKS = [
    {
        "id": "keyphrase_in_slug",
        "label": "Keyphrase in slug",
        "status": "fail",
        "reason": "The slug does not contain the keyphrase.",
        "value": False,
        "blocking": True,
    },
    {
        "id": "text_length",
        "label": "Text length",
        "status": "warn",
        "reason": "250 words; 300 or more is better.",
        "value": 250,
        "blocking": True,
    },
    {"id": "single_h1", "label": "Single H1", "status": "pass", "reason": "", "value": 1, "blocking": True},
]
PASSING = [{**c, "status": "pass"} for c in CHECKS]


@pytest.fixture
def editor(db):
    return _user("edna", EDITOR)


@pytest.fixture
def signed_in(editor):
    client = Client()
    client.force_login(editor)
    return client


def make_item(
    title="Fixing slow Wi-Fi at home",
    *,
    keyphrase="slow wifi",
    state=ContentItem.State.DRAFT,
    checks=PASSING,
    **fields,
) -> ContentItem:
    brief = Brief.objects.create(topic=title, keyphrase=keyphrase, audience="home customers", length="short")
    values = {
        "generation": ContentItem.Generation.DONE,
        "progress": 100,
        "title": title,
        "meta_title": f"{title} | Brightline",
        "meta_description": "Slow wifi at home? Here is what to try first.",
        "slug": "slow-wifi",
        "intro": "Slow wifi is usually fixable in minutes.",
        "sections": SECTIONS,
        "faq": FAQ,
        "image_prompts": [{"prompt": "A router on a shelf", "alt": "A router", "size": "square"}],
        "checks": checks,
        "revision": 1,
        **fields,
    }
    item = ContentItem.objects.create(brief=brief, state=state, **values)
    Revision.objects.create(item=item, number=1, fields=snapshot(item))
    return item


def make_image(item, *, status=ContentImage.Status.DONE, slot=0, **fields) -> ContentImage:
    return ContentImage.objects.create(
        item=item,
        slot=slot,
        prompt=item.image_prompts[0]["prompt"] if item.image_prompts else "x",
        seed=7,
        width=64,
        height=64,
        status=status,
        path=f"content/images/{item.pk}/x.png" if status == ContentImage.Status.DONE else "",
        **{"alt": "A router", **fields},
    )


def url(item, action: str = "") -> str:
    return reverse(f"studio-{action}" if action else "studio-item", args=[item.pk])


def page(client, item) -> str:
    response = client.get(url(item))
    assert response.status_code == 200
    return response.content.decode()


def edit_form(item, **changes) -> dict:
    """The edit form as the item's page renders it (a browser sends every field), with changes."""
    data = {
        "revision": str(item.revision),
        "title": item.title,
        "meta_title": item.meta_title,
        "meta_description": item.meta_description,
        "slug": item.slug,
        "intro": item.intro,
        "section_id": [s["id"] for s in item.sections],
        "section_heading": [s["heading"] for s in item.sections],
        "section_text": [s["text"] for s in item.sections],
        "faq_question": [f["question"] for f in item.faq] + [""],
        "faq_answer": [f["answer"] for f in item.faq] + [""],
        "note": "",
    }
    data.update(changes)
    return data


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- Who gets in ------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client, db):
    item = make_item()
    for address in (reverse("studio"), url(item)):
        response = client.get(address)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("signin"))
    response = client.post(url(item, "transition"), {"to": "in_review"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("signin"))
    assert ContentItem.objects.get(pk=item.pk).state == "draft"


def test_it_validates_the_editor_role(client, outsider, agent):
    item = make_item()
    image = make_image(item)
    for user in (outsider, agent):
        client.force_login(user)
        assert client.get(reverse("studio")).status_code == 403
        assert client.get(url(item)).status_code == 403
        assert client.post(reverse("studio-brief"), {"topic": "x", "keyphrase": "y"}).status_code == 403
        for action in ("save", "regenerate", "transition", "comment", "assign", "more-images"):
            response = client.post(url(item, action), {**edit_form(item, title="Mine"), "to": "in_review"})
            assert response.status_code == 403, action
        response = client.post(reverse("studio-image", args=[item.pk, image.pk]), {"action": "choose"})
        assert response.status_code == 403
    item.refresh_from_db()
    assert item.state == "draft" and item.title == "Fixing slow Wi-Fi at home" and item.revision == 1
    assert not Brief.objects.exclude(pk=item.brief_id).exists() and not Comment.objects.exists()
    assert not ContentImage.objects.get(pk=image.pk).chosen


def test_editors_get_both_pages(signed_in):
    item = make_item()
    assert signed_in.get(reverse("studio")).status_code == 200
    assert signed_in.get(url(item)).status_code == 200


def test_a_post_without_the_csrf_token_is_refused(editor):
    item = make_item()
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    posts = [
        (url(item, "comment"), {"anchor": "s1", "text": "Shorter, please."}),
        (url(item, "transition"), {"to": "in_review"}),
        (url(item, "save"), edit_form(item, title="Changed")),
        (
            reverse("studio-brief"),
            {"topic": "Mesh", "keyphrase": "mesh", "language": "en", "length": "short"},
        ),
    ]
    for address, data in posts:
        assert client.post(address, data).status_code == 403, address
    item.refresh_from_db()
    assert item.state == "draft" and item.title == "Fixing slow Wi-Fi at home"
    assert not Comment.objects.exists() and Brief.objects.count() == 1

    # With the token the page's form carries, the same post goes through.
    html = client.get(url(item)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(
        url(item, "comment"), {"anchor": "s1", "text": "Shorter, please.", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert Comment.objects.get().text == "Shorter, please."


def test_an_unknown_item_or_image_is_404(signed_in):
    item, other = make_item(), make_item("Another")
    foreign = make_image(other)
    assert signed_in.get(reverse("studio-item", args=[999999])).status_code == 404
    for action in ("save", "regenerate", "transition", "comment", "assign", "more-images"):
        assert signed_in.post(reverse(f"studio-{action}", args=[999999]), {"to": "x"}).status_code == 404
    # An image of another item is not this item's.
    response = signed_in.post(reverse("studio-image", args=[item.pk, foreign.pk]), {"action": "choose"})
    assert response.status_code == 404
    assert not ContentImage.objects.get(pk=foreign.pk).chosen


# --- The dashboard ----------------------------------------------------------------------------------


def listed(client, query=None) -> str:
    """The dashboard's tabs and item table (not the reviewer dashboard below them)."""
    html = client.get(reverse("studio"), query or {}).content.decode()
    return html.split('id="reviewers-title"')[0]


def test_the_dashboard_filters_by_state_search_and_assignee_and_counts_per_state(signed_in, editor):
    eve = _user("eve", EDITOR)
    make_item("Router placement guide", keyphrase="router placement", assignee=editor)
    make_item("Mesh networks explained", keyphrase="mesh wifi", state="in_review", assignee=eve)
    make_item("Fibre or cable?", keyphrase="fibre", state="in_review")
    make_item("Parental controls", keyphrase="parental controls", state="published", assignee=editor)

    html = listed(signed_in)
    for text in ("all (4)", "draft (1)", "in review (2)", "published (1)", "approved (0)"):
        assert text in html
    assert all(t in html for t in ("Router placement guide", "Mesh networks explained", "Parental controls"))

    html = listed(signed_in, {"state": "in_review"})
    assert "Mesh networks explained" in html and "Fibre or cable?" in html
    assert "Router placement guide" not in html and "Parental controls" not in html

    # Search covers the title and the keyphrase; the tabs count what the search leaves.
    html = listed(signed_in, {"q": "MESH"})
    assert "Mesh networks explained" in html and "Router placement guide" not in html
    assert "in review (1)" in html and "all (1)" in html
    html = listed(signed_in, {"q": "parental"})
    assert "Parental controls" in html and "Fibre or cable?" not in html

    html = listed(signed_in, {"assignee": "eve"})
    assert "Mesh networks explained" in html and "Router placement guide" not in html
    html = listed(signed_in, {"mine": "1"})
    assert "Router placement guide" in html and "Parental controls" in html
    assert "Mesh networks explained" not in html and "Fibre or cable?" not in html
    # A state tab keeps the other filters.
    html = listed(signed_in, {"mine": "1", "state": "published"})
    assert "Parental controls" in html and "Router placement guide" not in html

    assert signed_in.get(reverse("studio"), {"state": "lost"}).status_code == 400


def test_the_dashboard_shows_progress_due_dates_and_failing_checks(signed_in):
    today = timezone.localdate()
    make_item("Late one", due_date=today - timedelta(days=2), checks=CHECKS)
    make_item("Done late", state="published", due_date=today - timedelta(days=2))
    make_item("Being written", generation="running", progress=40, step="Writing section 2 of 3")
    html = signed_in.get(reverse("studio")).content.decode()
    rows = {
        title: row
        for row in html.split("<tr>")
        for title in ("Late one", "Done late", "Being written")
        if title in row
    }
    assert "overdue" in rows["Late one"] and '<span class="badge bad">1</span>' in rows["Late one"]
    assert "overdue" not in rows["Done late"]  # published: nothing is late any more
    assert '<progress max="100" value="40">' in rows["Being written"]
    assert "Writing section 2 of 3" in rows["Being written"]


def test_the_reviewer_dashboard_lists_what_awaits_each_editor(signed_in, editor):
    eve = _user("eve", EDITOR)
    _user("fred", EDITOR)
    make_item("Needs Edna", state="in_review", assignee=editor)
    make_item("Back to Eve", state="changes_requested", assignee=eve)
    make_item("Edna's draft", state="draft", assignee=editor)
    make_item("Nobody's", state="in_review")
    html = signed_in.get(reverse("studio")).content.decode()
    reviewers = html.split('id="reviewers-title"')[1].split("</section>")[0]
    edna = reviewers.split("<h3>edna")[1].split("<h3>")[0]
    eve_part = reviewers.split("<h3>eve")[1].split("<h3>")[0]
    fred = reviewers.split("<h3>fred")[1]
    assert "Needs Edna" in edna and "(you)" in edna and "Edna&#x27;s draft" not in edna
    assert "Back to Eve" in eve_part and "changes requested" in eve_part
    assert "Nothing waiting." in fred
    assert "Nobody&#x27;s" not in reviewers


# --- A new brief -------------------------------------------------------------------------------------

BRIEF_FORM = {
    "topic": "Choosing a mesh system",
    "keyphrase": "mesh wifi",
    "audience": "home customers",
    "tone": "friendly",
    "language": "en",
    "length": "short",
    "style_guide": "Use British spelling.\r\nNo exclamation marks.",
    "with_images": "on",
}


def test_a_new_brief_creates_the_item_queues_its_generation_and_opens_its_page(
    signed_in, editor, django_capture_on_commit_callbacks
):
    with mock.patch("core.jobs.enqueue", autospec=True) as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_in.post(reverse("studio-brief"), BRIEF_FORM)
    item = ContentItem.objects.get(brief__topic="Choosing a mesh system")
    assert response.status_code == 302 and response["Location"] == url(item)
    enqueue.assert_called_once_with("content.generate", item.pk)
    brief = item.brief
    assert (brief.keyphrase, brief.length, brief.with_images, brief.created_by) == (
        "mesh wifi",
        "short",
        True,
        editor,
    )
    assert brief.style_guide == "Use British spelling.\nNo exclamation marks."
    assert item.generation == "queued" and item.title == "Choosing a mesh system"

    html = page(signed_in, item)
    assert "<progress" in html and f'data-api="/api/content/items/{item.pk}"' in html
    assert 'data-status="queued"' in html and "/static/parley/studio.js" in html
    assert 'id="edit-form"' not in html  # nothing to edit while the model writes


def test_a_brief_without_images(signed_in, django_capture_on_commit_callbacks):
    with mock.patch("core.jobs.enqueue", autospec=True) as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            signed_in.post(
                reverse("studio-brief"), {k: v for k, v in BRIEF_FORM.items() if k != "with_images"}
            )
    assert ContentItem.objects.get().brief.with_images is False
    enqueue.assert_called_once()


def test_an_invalid_brief_comes_back_with_the_errors_and_everything_typed(
    signed_in, django_capture_on_commit_callbacks
):
    form = {**BRIEF_FORM, "keyphrase": "   ", "language": "e", "length": "epic", "topic": f"Mesh {HOSTILE}"}
    with mock.patch("core.jobs.enqueue", autospec=True) as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            response = signed_in.post(reverse("studio-brief"), form)
    assert response.status_code == 400
    html = response.content.decode()
    errors = response.context["form"].errors
    assert set(errors) == {"keyphrase", "language", "length"}
    assert "This field is required." in html and "Select a valid choice." in html
    assert f'value="Mesh {ESCAPED}"' in html and HOSTILE not in html  # kept, as text
    assert 'value="home customers"' in html and 'value="friendly"' in html
    assert "Use British spelling.\r\nNo exclamation marks.</textarea>" in html
    assert not ContentItem.objects.exists() and not Brief.objects.exists()
    enqueue.assert_not_called()


def test_create_brief_refuses_what_the_api_would_refuse(editor):
    """content/briefs.py's create_brief, which the API will call too."""
    from content.briefs import create_brief

    good = {"topic": "Mesh", "keyphrase": "mesh wifi", "language": "en", "length": "short"}
    for data, code in (
        ({**good, "colour": "red"}, "bad_request"),
        ({**good, "keyphrase": "  "}, "bad_request"),
        ({**good, "length": "epic"}, "bad_request"),
        ({**good, "topic": "x" * 201}, "bad_request"),
        ({**good, "references": [999999]}, "unknown_document"),
        ({**good, "references": ["1"]}, "bad_request"),
    ):
        with pytest.raises(StudioError) as refused:
            create_brief(editor, data)
        assert (refused.value.code, refused.value.status) == (code, 400), data
    assert not Brief.objects.exists()
    item = create_brief(editor, {**good, "topic": "  Mesh  "})
    assert item.brief.topic == "Mesh" and item.title == "Mesh" and item.brief.created_by == editor


# --- Editing ------------------------------------------------------------------------------------------


def test_saving_the_edit_form_makes_a_revision_with_per_field_diffs(signed_in, editor):
    item = make_item()
    form = edit_form(
        item,
        title="Fix slow wifi today",
        section_text=["Walls and distance weaken the signal.", "Restart the router.\r\nThen move it."],
        faq_question=["Does a restart help?", "Is 5 GHz faster?"],
        faq_answer=["Often, yes.", "Up close."],
        note="tightened",
    )
    response = signed_in.post(url(item, "save"), form, follow=True)
    assert "Saved as revision 2." in messages_of(response)
    item.refresh_from_db()
    assert item.revision == 2 and item.title == "Fix slow wifi today"
    assert item.sections[1]["text"] == "Restart the router.\nThen move it."  # LF, not CRLF
    assert item.faq[1] == {"question": "Is 5 GHz faster?", "answer": "Up close."}
    latest = Revision.objects.get(item=item, number=2)
    assert latest.author == editor and latest.note == "tightened"

    html = response.content.decode()
    assert 'name="revision" value="2"' in html
    assert '<span class="del">-Fixing slow Wi-Fi at home</span>' in html
    assert '<span class="add">+Fix slow wifi today</span>' in html


def test_editing_an_approved_item_sends_it_back_to_review(signed_in):
    item = make_item(state="approved")
    response = signed_in.post(url(item, "save"), edit_form(item, intro="A new opening line."), follow=True)
    assert "Saved as revision 2; it needs a new approval." in messages_of(response)
    assert ContentItem.objects.get(pk=item.pk).state == "in_review"


def test_saving_the_form_untouched_saves_nothing(signed_in):
    item = make_item()
    # Browsers send textareas with CRLF line ends; that is no change.
    form = edit_form(item, section_text=[s["text"].replace("\n", "\r\n") for s in item.sections])
    response = signed_in.post(url(item, "save"), form, follow=True)
    assert "Nothing changed; nothing was saved." in messages_of(response)
    assert ContentItem.objects.get(pk=item.pk).revision == 1 and Revision.objects.count() == 1


def test_an_edit_conflict_keeps_the_submitted_text_and_says_why(signed_in):
    item = make_item()
    eve = _user("eve", EDITOR)
    # Eve saves revision 2 while Edna still has revision 1 open.
    from content.review import save_fields

    save_fields(item, {"intro": "Eve's introduction."}, user=eve, base_revision=1)
    mine = "My careful rewrite of the introduction.\r\nSecond line."
    response = signed_in.post(url(item, "save"), edit_form(item, intro=mine, title=f"Edna's {HOSTILE}"))
    assert response.status_code == 409
    html = response.content.decode()
    assert "eve saved revision 2 after the 1 you edited" in html
    assert "My careful rewrite of the introduction.\nSecond line.</textarea>" in html
    assert f'value="Edna&#x27;s {ESCAPED}"' in html and HOSTILE not in html
    assert 'name="revision" value="1"' in html  # saving again is refused again, never an overwrite
    assert f'href="{url(item)}"' in html and "reload the latest revision" in html
    item.refresh_from_db()
    assert item.intro == "Eve's introduction." and item.title == "Fixing slow Wi-Fi at home"
    assert item.revision == 2


def test_a_refused_edit_is_a_message_not_an_error_page(signed_in):
    item = make_item()
    response = signed_in.post(url(item, "save"), edit_form(item, title="x" * 301))
    assert response.status_code == 413
    assert "title is longer than 300 characters." in response.content.decode()
    response = signed_in.post(url(item, "save"), edit_form(item, revision=""))
    assert response.status_code == 400 and "reload the page" in response.content.decode()
    assert ContentItem.objects.get(pk=item.pk).revision == 1


def test_regenerating_a_part_queues_it_and_answers_at_once(
    signed_in, editor, django_capture_on_commit_callbacks
):
    item = make_item()
    with (
        mock.patch("core.jobs.enqueue", autospec=True) as enqueue,
        mock.patch("content.generation.regenerate_part", autospec=True) as regenerate,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = signed_in.post(url(item, "regenerate"), {"part": "s2"}, follow=True)
    job = Regeneration.objects.get()
    enqueue.assert_called_once_with("content.regenerate_part", job.pk)
    regenerate.assert_not_called()  # the worker writes it, not the request
    assert (job.item_id, job.part, job.status, job.requested_by) == (item.pk, "s2", "queued", editor)
    assert messages_of(response) == [
        "Regenerating the section “Quick fixes”: the model is writing it; "
        "it is saved as a new revision when done."
    ]
    html = response.content.decode()
    assert f'<div id="regeneration" data-api="/api/content/items/{item.pk}" data-id="{job.pk}"' in html
    assert 'data-status="queued"' in html and "Regenerating the section “Quick fixes”: waiting" in html
    for part in ("s1", "s2", "intro", "meta_description", "faq"):  # no second one meanwhile
        assert f'form="regenerate-form" name="part" value="{part}" class="secondary" disabled' in html

    # One at a time: the next part waits until this one is saved.
    with mock.patch("core.jobs.enqueue", autospec=True) as enqueue:
        response = signed_in.post(url(item, "regenerate"), {"part": "intro"}, follow=True)
    enqueue.assert_not_called()
    assert "The model is rewriting the section “Quick fixes”; wait until it is saved." in messages_of(
        response
    )
    # Unless that one lost its worker: it is given up and the new one goes ahead.
    Regeneration.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    with mock.patch("core.jobs.enqueue", autospec=True) as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            signed_in.post(url(item, "regenerate"), {"part": "intro"})
    newer = Regeneration.objects.exclude(pk=job.pk).get()
    enqueue.assert_called_once_with("content.regenerate_part", newer.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "No worker finished it" in job.error


def test_the_regeneration_task_saves_the_part_and_the_page_shows_it(signed_in, editor):
    from content import regeneration, review
    from content.tasks import content_regenerate_part

    item = make_item()
    job = regeneration.request(item, "s2", editor)

    def rewrite(item, part, *, user):
        sections = [dict(s) for s in item.sections]
        sections[1]["text"] = "Restart the router, then move it off the floor."
        return review.save_fields(
            item, {"sections": sections}, user=user, base_revision=item.revision, note=f"regenerated {part}"
        )

    with mock.patch("content.generation.regenerate_part", autospec=True, side_effect=rewrite) as regenerate:
        assert content_regenerate_part(job.pk) == "done"
        assert content_regenerate_part(job.pk) is None  # a redelivered task does nothing
    regenerate.assert_called_once()
    (called_item, part), kwargs = regenerate.call_args
    assert called_item.pk == item.pk and part == "s2" and kwargs == {"user": editor}
    job.refresh_from_db()
    assert (job.status, job.revision, job.error) == ("done", 2, "")
    assert job.started_at and job.finished_at
    item.refresh_from_db()
    assert item.sections[1]["text"] == "Restart the router, then move it off the floor."
    assert item.revisions.get(number=2).author == editor

    html = page(signed_in, item)
    assert 'data-status="done"' in html and "The section “Quick fixes”: revision 2." in html
    assert "Restart the router, then move it off the floor.</textarea>" in html
    assert 'value="s2" class="secondary">Regenerate this section' in html  # not disabled any more
    detail = signed_in.get(f"/api/content/items/{item.pk}").json()["regeneration"]
    assert detail | {"requested_at": None, "started_at": None, "finished_at": None} == {
        "id": job.pk,
        "part": "s2",
        "label": "the section “Quick fixes”",
        "status": "done",
        "requested_by": "edna",
        "requested_at": None,
        "started_at": None,
        "finished_at": None,
        "revision": 2,
        "error": None,
    }


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (
            StudioError("edit_conflict", "eve saved revision 2 after the 1 you edited."),
            "eve saved revision 2",
        ),
        (
            InferenceError("The model is not loaded."),
            "The model could not rewrite it: The model is not loaded.",
        ),
        (RuntimeError("disk full"), "RuntimeError: disk full"),
    ],
)
def test_a_failed_regeneration_says_why_on_the_page(signed_in, editor, error, shown):
    from content import regeneration
    from content.tasks import content_regenerate_part

    item = make_item()
    job = regeneration.request(item, "intro", editor)
    with mock.patch("content.generation.regenerate_part", autospec=True, side_effect=error):
        assert content_regenerate_part(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and shown in job.error
    assert ContentItem.objects.get(pk=item.pk).revision == 1  # nothing saved
    html = page(signed_in, item)
    assert 'data-status="failed"' in html and f"The introduction: {shown}" in html


def test_regenerating_is_refused_while_the_article_is_being_written(signed_in):
    item = make_item(generation="running")
    with mock.patch("core.jobs.enqueue", autospec=True) as enqueue:
        response = signed_in.post(url(item, "regenerate"), {"part": "intro"}, follow=True)
    enqueue.assert_not_called()
    assert "The article is still being generated." in messages_of(response)
    assert not Regeneration.objects.exists()


def test_regenerating_a_part_the_item_lacks_is_a_message(signed_in):
    item = make_item()
    with mock.patch("core.jobs.enqueue", autospec=True) as enqueue:
        response = signed_in.post(url(item, "regenerate"), {"part": "zz"}, follow=True)
    enqueue.assert_not_called()
    assert response.status_code == 200
    assert "No part called 'zz': use intro, meta_description, faq or a section id." in messages_of(response)
    assert not Regeneration.objects.exists()


# --- Review --------------------------------------------------------------------------------------------


def test_the_page_offers_only_the_moves_the_state_allows(signed_in):
    forms = {
        "draft": ["in_review"],
        "in_review": ["changes_requested", "approved"],
        "changes_requested": ["in_review"],
        "approved": ["published"],
        "published": [],
    }
    for state, allowed in forms.items():
        html = page(signed_in, make_item(f"An item {state}", state=state))
        offered = re.findall(r'<input type="hidden" name="to" value="([a-z_]+)">', html)
        assert offered == allowed, state
        assert ("/export?format=md" in html) == (state in ("approved", "published"))


def test_requesting_changes_needs_a_reason(signed_in, editor):
    item = make_item(state="in_review")
    response = signed_in.post(
        url(item, "transition"), {"to": "changes_requested", "reason": "  "}, follow=True
    )
    assert "Say what should change (a reason is required)." in messages_of(response)
    assert ContentItem.objects.get(pk=item.pk).state == "in_review"

    response = signed_in.post(
        url(item, "transition"), {"to": "changes_requested", "reason": "Cite the router guide."}, follow=True
    )
    assert "The item is now changes requested." in messages_of(response)
    assert ContentItem.objects.get(pk=item.pk).state == "changes_requested"
    change = StateChange.objects.get(item=item)
    assert (change.user, change.reason) == (editor, "Cite the router guide.")
    assert "Cite the router guide." in response.content.decode()  # the history


def test_a_failing_check_blocks_approval_until_overridden_with_a_reason(signed_in, editor):
    item = make_item(state="in_review", checks=CHECKS)
    html = page(signed_in, item)
    assert 'name="override_keyphrase_in_slug" form="approve-form"' in html
    assert 'class="check check-fail"' in html and 'class="check check-warn"' in html
    assert "The slug does not contain the keyphrase." in html and "blocks approval" in html

    response = signed_in.post(url(item, "transition"), {"to": "approved"}, follow=True)
    assert "Failing checks block approval: Keyphrase in slug." in messages_of(response)[0]
    assert ContentItem.objects.get(pk=item.pk).state == "in_review"

    response = signed_in.post(
        url(item, "transition"),
        {"to": "approved", "override_keyphrase_in_slug": "The slug is the product's name.", "override_x": ""},
        follow=True,
    )
    assert "The item is now approved." in messages_of(response)
    item.refresh_from_db()
    assert item.state == "approved" and item.approved_by == editor
    assert item.overrides["keyphrase_in_slug"]["reason"] == "The slug is the product's name."
    html = response.content.decode()
    assert "Overridden by edna: “The slug is the product&#x27;s name.”" in html
    for fmt in ("md", "html", "json", "zip"):
        assert f'href="/api/content/items/{item.pk}/export?format={fmt}"' in html


def test_submitting_and_publishing(signed_in):
    item = make_item()
    response = signed_in.post(url(item, "transition"), {"to": "in_review"}, follow=True)
    assert "The item is now in review." in messages_of(response)
    ContentItem.objects.filter(pk=item.pk).update(state="approved")
    response = signed_in.post(url(item, "transition"), {"to": "published"}, follow=True)
    assert "The item is now published." in messages_of(response)
    item.refresh_from_db()
    assert item.state == "published" and item.published_at is not None
    # Publishing twice is refused with a message.
    response = signed_in.post(url(item, "transition"), {"to": "published"}, follow=True)
    assert "An item that is published cannot move to published." in messages_of(response)
    response = signed_in.post(url(item, "transition"), {"to": "gone"}, follow=True)
    assert response.status_code == 200 and "'to' must be one of" in messages_of(response)[0]


def test_assigning_an_editor_and_a_due_date(signed_in, outsider):
    item = make_item()
    eve = _user("eve", EDITOR)
    response = signed_in.post(
        url(item, "assign"), {"assignee": eve.pk, "due_date": "2030-05-01"}, follow=True
    )
    assert "Assigned to eve, due 2030-05-01." in messages_of(response)
    item.refresh_from_db()
    assert item.assignee == eve and item.due_date.isoformat() == "2030-05-01"
    html = response.content.decode()
    assert f'<option value="{eve.pk}" selected>eve</option>' in html and 'value="2030-05-01"' in html

    for bad, message in (
        ({"assignee": outsider.pk}, "No editor with that name."),
        ({"assignee": eve.pk, "due_date": "soon"}, "The due date is not a date (YYYY-MM-DD)."),
    ):
        response = signed_in.post(url(item, "assign"), bad, follow=True)
        assert message in messages_of(response)
    assert ContentItem.objects.get(pk=item.pk).assignee == eve

    signed_in.post(url(item, "assign"), {"assignee": "", "due_date": ""})
    item.refresh_from_db()
    assert item.assignee is None and item.due_date is None


# --- Comments --------------------------------------------------------------------------------------------


def test_comments_are_shown_with_their_section_and_their_resolved_flag(signed_in, editor):
    item = make_item()
    response = signed_in.post(
        url(item, "comment"), {"anchor": "s2", "text": "Add a step\r\nabout 5 GHz."}, follow=True
    )
    assert "Comment added." in messages_of(response)
    comment = Comment.objects.get()
    assert (comment.anchor, comment.author, comment.text) == ("s2", editor, "Add a step\nabout 5 GHz.")
    Comment.objects.create(item=item, anchor="intro", author=editor, text="Old note", resolved=True)

    html = page(signed_in, item)
    section = html.split('id="section-s1"')[1].split("</fieldset>")[0]
    assert "Add a step\nabout 5 GHz." in section and "Quick fixes" in section
    intro = html.split('id="f-intro"')[1].split('class="field"')[0]
    assert "Old note" in intro and "resolved" in intro
    # Each comment form is its own form (the anchor hidden in it), outside the edit form.
    assert '<form id="comment-s1" method="post"' in html
    assert '<input type="hidden" name="anchor" value="s2">' in html

    response = signed_in.post(url(item, "comment"), {"anchor": "nowhere", "text": "Hi"}, follow=True)
    assert "Comments are anchored to a section id or a field name." in messages_of(response)
    response = signed_in.post(url(item, "comment"), {"anchor": "s1", "text": "  "}, follow=True)
    assert "A comment is text of 1 to 5000 characters." in messages_of(response)
    assert Comment.objects.count() == 2


# --- Images ----------------------------------------------------------------------------------------------


def test_the_gallery_shows_candidates_labelled_and_their_actions(signed_in):
    item = make_item()
    done = make_image(item, meaningful=False, model_version="builtin-tiny")
    queued = make_image(item, status=ContentImage.Status.QUEUED)
    html = page(signed_in, item)
    assert f'<img src="/api/content/images/{done.pk}.png" alt="A router"' in html
    assert f"/api/content/images/{queued.pk}.png" not in html  # nothing to show yet
    assert "AI-generated" in html and "Built-in offline model: this picture is not meaningful" in html
    image_form = reverse("studio-image", args=[item.pk, done.pk])
    assert f'action="{image_form}"' in html
    assert 'name="action" value="choose"' in html and 'name="action" value="cancel"' in html
    assert f'action="{url(item, "more-images")}"' in html

    make_image(item)  # a meaningful one: no note for it
    assert page(signed_in, item).count("this picture is not meaningful") == 1


def test_choosing_rejecting_and_cancelling_candidates(signed_in):
    item = make_item()
    first, second = make_image(item), make_image(item)
    queued = make_image(item, status=ContentImage.Status.QUEUED)

    def act(image, action):
        return signed_in.post(
            reverse("studio-image", args=[item.pk, image.pk]), {"action": action}, follow=True
        )

    assert "Chose this candidate for image 1." in messages_of(act(first, "choose"))
    assert "Chose this candidate for image 1." in messages_of(act(second, "choose"))
    first.refresh_from_db(), second.refresh_from_db()
    assert second.chosen and not first.chosen  # one chosen per prompt

    assert "Rejected the candidate." in messages_of(act(second, "reject"))
    second.refresh_from_db()
    assert second.rejected and not second.chosen

    assert "Cancelled the candidate." in messages_of(act(queued, "cancel"))
    assert ContentImage.objects.get(pk=queued.pk).status == "cancelled"
    assert "Only a queued or running image can be cancelled." in messages_of(act(first, "cancel"))
    assert "Only a finished image can be chosen." in messages_of(act(queued, "choose"))
    assert "The action is choose, reject or cancel." in messages_of(act(first, "paint"))


def test_more_candidates_for_one_prompt(signed_in, settings):
    settings.CONTENT_IMAGE_CANDIDATES = 2
    item = make_item()
    # Queued only: the render tasks go out on commit, which these (rolled back) tests never reach.
    response = signed_in.post(url(item, "more-images"), {"slot": "0"}, follow=True)
    assert "2 more candidates queued for image 1." in messages_of(response)
    assert ContentImage.objects.filter(item=item, slot=0, status="queued").count() == 2
    response = signed_in.post(url(item, "more-images"), {"slot": "3"}, follow=True)
    assert "No image prompt with that number." in messages_of(response)


# --- What people and the model wrote is text ------------------------------------------------------------


def test_hostile_text_is_shown_as_text_on_every_page(signed_in, editor):
    item = make_item(
        f"Title {HOSTILE}",
        keyphrase=f"kp {HOSTILE}",
        state="in_review",
        assignee=editor,
        meta_description=f"Meta {HOSTILE}",
        intro=f"Intro {HOSTILE}",
        sections=[{"id": "s1", "heading": f"H {HOSTILE}", "text": f"Text {HOSTILE}"}],
        faq=[{"question": f"Q {HOSTILE}", "answer": f"A {HOSTILE}"}],
        image_prompts=[{"prompt": f"P {HOSTILE}", "alt": f"Alt {HOSTILE}"}],
        checks=[{**CHECKS[0], "label": f"L {HOSTILE}", "reason": f"R {HOSTILE}"}],
        step=f"Step {HOSTILE}",
    )
    Brief.objects.filter(pk=item.brief_id).update(audience=HOSTILE, style_guide=HOSTILE)
    Comment.objects.create(item=item, anchor="s1", author=editor, text=f"C {HOSTILE}")
    Comment.objects.create(item=item, anchor="image_prompts", author=editor, text=f"O {HOSTILE}")
    StateChange.objects.create(
        item=item, action="submit", from_state="draft", to_state="in_review", reason=HOSTILE
    )
    make_image(item, alt=f"Alt {HOSTILE}", error=HOSTILE)
    ContentItem.objects.filter(pk=item.pk).update(overrides={"x": {"reason": HOSTILE, "user": "edna"}})
    Revision.objects.create(item=item, number=2, fields={**snapshot(item), "title": HOSTILE}, note=HOSTILE)

    for html in (signed_in.get(reverse("studio")).content.decode(), page(signed_in, item)):
        assert ESCAPED in html
        assert HOSTILE not in html
    html = page(signed_in, item)
    for prefix in ("Intro ", "Text ", "Q ", "A ", "P ", "R ", "C ", "O "):
        assert prefix + ESCAPED in html, prefix


# --- The pages stay within the CSP ----------------------------------------------------------------------


class _Inline(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, event handlers, style attributes
    and <style> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script":
            self._in_script = True
            if not names.get("src"):
                self.problems.append("<script> without src")
        if tag == "style":
            self.problems.append("<style> block")
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"{tag} {name}=")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append("inline script text")


def test_the_pages_have_no_inline_script_or_style(signed_in, editor):
    done = make_item(state="in_review", checks=CHECKS)
    make_image(done, meaningful=False)
    Comment.objects.create(item=done, anchor="s1", author=editor, text="Hi")
    writing = make_item("Being written", generation="running", progress=10)
    responses = [
        signed_in.get(reverse("studio")),
        signed_in.get(url(done)),
        signed_in.get(url(writing)),
        signed_in.post(reverse("studio-brief"), {"topic": ""}),  # the form with errors
        signed_in.post(url(done, "save"), edit_form(done, revision="0")),  # the conflict page
    ]
    for response in responses:
        assert response.status_code in (200, 400, 409)
        assert "Content-Security-Policy" in response
        parser = _Inline()
        parser.feed(response.content.decode())
        assert parser.problems == [], response.request["PATH_INFO"]


def test_image_prompts_carry_their_own_steps_guidance_and_seed(settings):
    """Queued candidates take each prompt's settings (the model itself runs in
    test_content_studio.py); bad ones are refused when queued."""
    from content.images import queue_images

    settings.CONTENT_IMAGE_CANDIDATES = 2
    item = make_item(
        image_prompts=[
            {
                "prompt": "A router",
                "alt": "A router",
                "size": "square",
                "steps": "6",
                "guidance": "2.5",
                "seed": 41,
            }
        ]
    )
    first, second = queue_images(item)
    assert (first.steps, first.guidance, first.seed, second.seed) == (6, 2.5, 41, 42)
    ContentItem.objects.filter(pk=item.pk).update(
        image_prompts=[{"prompt": "x", "alt": "y", "steps": "many"}]
    )
    item.refresh_from_db()
    with pytest.raises(StudioError, match="steps must be a number"):
        queue_images(item)

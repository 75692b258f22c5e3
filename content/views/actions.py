"""What an editor does on an item's page, as plain HTML form posts: save the edit form, ask
for a part to be regenerated, move the item, comment, assign, and act on image candidates. Each
calls the service layer and comes back to the page with its message; a refusal (an edit
conflict, a missing reason, a failing check) is a message on the page, never an error page."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from content import images, regeneration, review
from content.errors import StudioError
from content.models import ContentImage, ContentItem
from content.views.base import STATE_LABELS, State, editor_required, editors, get_item_or_404
from content.views.item import SCALAR_FIELDS, item_response
from core.pages import post_action


def _text(request: HttpRequest, name: str) -> str:
    """A posted text: browsers send CRLF line ends from textareas, the item stores LF; without
    this an untouched field would look edited and make a new revision."""
    return request.POST.get(name, "").replace("\r\n", "\n").replace("\r", "\n")


def _texts(request: HttpRequest, name: str) -> list[str]:
    return [v.replace("\r\n", "\n").replace("\r", "\n") for v in request.POST.getlist(name)]


def _posted_edit(request: HttpRequest) -> dict[str, Any]:
    """The edit form as submitted, in edit_values' shape (to save it, or to show it again)."""
    ids, headings, texts = (_texts(request, f"section_{k}") for k in ("id", "heading", "text"))
    questions, answers = _texts(request, "faq_question"), _texts(request, "faq_answer")
    if len(ids) != len(headings) or len(ids) != len(texts) or len(questions) != len(answers):
        raise StudioError("bad_request", "The form's sections or FAQ are incomplete.", 400)
    return {
        "revision": request.POST.get("revision", "").strip(),
        **{name: _text(request, name) for name in SCALAR_FIELDS},
        "sections": [
            {"id": i, "heading": h, "text": t} for i, h, t in zip(ids, headings, texts, strict=True)
        ],
        # A pair left blank (the form's empty row for a new question) is no pair.
        "faq": [
            {"question": q, "answer": a}
            for q, a in zip(questions, answers, strict=True)
            if q.strip() or a.strip()
        ],
        "posted": {name for name in request.POST},
    }


def _changes(edit: dict[str, Any]) -> dict[str, Any]:
    """What the form sent, as save_fields takes it; a field the form did not send stays as is."""
    posted = edit["posted"]
    changes = {n: edit[n] for n in SCALAR_FIELDS if n in posted}
    if "section_id" in posted:
        changes["sections"] = edit["sections"]
    if "faq_question" in posted:
        changes["faq"] = edit["faq"]
    return changes


@require_POST
@editor_required
def save(request: HttpRequest, item_id: int) -> HttpResponse:
    """Save the edit form from the revision it was opened at. Refused (someone saved since, a
    value too long): the page again with the message and the editor's text kept in the form."""
    item = get_item_or_404(item_id)
    edit: dict[str, Any] | None = None
    try:
        edit = _posted_edit(request)
        if not edit["revision"].isdigit():
            raise StudioError(
                "bad_request", "The form lacks the revision it was opened at; reload the page.", 400
            )
        base = int(edit["revision"])
        saved = review.save_fields(
            item, _changes(edit), user=request.user, base_revision=base, note=_text(request, "note")
        )
    except StudioError as exc:
        messages.error(request, exc.message)
        conflict = exc.code == "edit_conflict"
        again = get_item_or_404(item_id)
        return item_response(request, again, edit=edit, conflict=conflict, status=exc.status)
    if saved.revision == base:
        messages.info(request, "Nothing changed; nothing was saved.")
    elif saved.state != item.state:  # an approved or published item goes back to review
        messages.success(request, f"Saved as revision {saved.revision}; it needs a new approval.")
    else:
        messages.success(request, f"Saved as revision {saved.revision}.")
    return redirect("studio-item", item_id=item.pk)


# A POST on an item: its success message, or the refusal's, then back to the item's page.
_action = post_action(get_item_or_404, "studio-item", "item_id", editor_required)


@_action
def regenerate(request: HttpRequest, item: ContentItem) -> str:
    """One part rewritten by the model in the background (the `content.regenerate_part` task);
    the page shows it regenerating, then the revision it saved or why it could not."""
    job = regeneration.request(item, request.POST.get("part", ""), request.user)
    label = regeneration.part_label(item, job.part)
    return f"Regenerating {label}: the model is writing it; it is saved as a new revision when done."


@require_POST
@editor_required
def move(request: HttpRequest, item_id: int) -> HttpResponse:
    """A review step (submit, request changes, approve, publish), then back to the page with
    its message. Refused because the model is still writing: the page itself, with the reason
    and a 409, so a script sees the refusal too (nothing moved)."""
    item = get_item_or_404(item_id)
    to = request.POST.get("to", "")
    overrides: dict[str, str] = {}
    if to == State.APPROVED:
        # The reasons typed beside the failing checks (the service refuses blank ones).
        for check_id in (str(c.get("id")) for c in item.checks if isinstance(c, dict)):
            why = request.POST.get(f"override_{check_id}", "").strip()
            if why:
                overrides[check_id] = why
    try:
        review.transition(item, to, user=request.user, reason=_text(request, "reason"), overrides=overrides)
    except StudioError as exc:
        messages.error(request, exc.message)
        if exc.code == "still_writing":
            return item_response(request, get_item_or_404(item_id), status=exc.status)
    else:
        messages.success(request, f"The item is now {STATE_LABELS[to]}.")
    return redirect("studio-item", item_id=item.pk)


@_action
def comment(request: HttpRequest, item: ContentItem) -> str:
    review.add_comment(item, request.user, request.POST.get("anchor", ""), _text(request, "text"))
    return "Comment added."


@_action
def assign(request: HttpRequest, item: ContentItem) -> str:
    raw, raw_due = request.POST.get("assignee", "").strip(), request.POST.get("due_date", "").strip()
    assignee = editors().filter(pk=int(raw)).first() if raw.isdigit() else None
    if raw and assignee is None:
        raise StudioError("unknown_editor", "No editor with that name.", 400)
    try:
        due = date.fromisoformat(raw_due) if raw_due else None
    except ValueError as exc:
        raise StudioError("bad_request", "The due date is not a date (YYYY-MM-DD).", 400) from exc
    review.assign(item, request.user, assignee, due)
    who = assignee.get_username() if assignee else "nobody"
    return f"Assigned to {who}" + (f", due {due.isoformat()}." if due else ", no due date.")


@_action
def more_images(request: HttpRequest, item: ContentItem) -> str:
    raw = request.POST.get("slot", "")
    if not raw.isdigit():
        raise StudioError("bad_request", "No image prompt with that number.", 400)
    rows = images.queue_images(item, int(raw))
    return f"{len(rows)} more candidate{'s' if len(rows) != 1 else ''} queued for image {int(raw) + 1}."


@_action
def image_action(request: HttpRequest, item: ContentItem, image_id: int) -> str:
    image = ContentImage.objects.filter(pk=image_id, item=item).first()
    if image is None:
        raise Http404("No such image.")
    action = request.POST.get("action")
    if action == "choose":
        images.choose(image)
        return f"Chose this candidate for image {image.slot + 1}."
    if action == "reject":
        images.reject(image)
        return "Rejected the candidate."
    if action == "cancel":
        if not images.cancel(image):
            raise StudioError("conflict", "Only a queued or running image can be cancelled.")
        return "Cancelled the candidate."
    raise StudioError("bad_request", "The action is choose, reject or cancel.", 400)

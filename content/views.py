"""The content studio's staff pages (editors only): the dashboard (items by state, search and
assignee, what awaits each reviewer, the new-brief form) and one item's page (its edit form,
regeneration, comments, checks and overrides, state moves, assignment, image candidates,
revisions and history), as plain HTML forms that work without JavaScript. static/parley/studio.js
only follows the generation's progress.

Every change goes through the service layer (content/review.py, generation.py, images.py,
briefs.py), as the API's do, and the pages show present.py's dicts, as the API does. A refused
change (an edit conflict, a missing reason, a failing check) comes back as a message on the
page, never as an error page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, F, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_fsm import can_proceed

from content import images, present, review
from content.briefs import BriefForm, create_brief
from content.models import ContentImage, ContentItem
from content.review import StudioError
from core.roles import EDITOR, has_role

PAGE_SIZE = 50
State = ContentItem.State
STATE_LABELS = {value: label.lower() for value, label in State.choices}
AWAITING_REVIEW = (State.IN_REVIEW, State.CHANGES_REQUESTED)
MOVES = ("submit", "request_changes", "approve", "publish")  # the FSM transitions the page offers
EXPORTABLE = (State.APPROVED, State.PUBLISHED)
EXPORT_FORMATS = ("md", "html", "json", "zip")
# Comment anchors shown beside their field in the edit form (sections show their own).
FIELD_ANCHORS = ("title", "meta_title", "meta_description", "slug", "intro", "faq")
# The edit form's one-value fields (sections and the FAQ are lists of them).
SCALAR_FIELDS = ("title", "meta_title", "meta_description", "slug", "intro")
PART_LABELS = {"intro": "the introduction", "meta_description": "the meta description", "faq": "the FAQ"}
# present's dicts carry ISO strings (the API's format); the templates want dates.
DATETIME_KEYS = {"updated_at", "at", "approved_at", "published_at"}


def editor_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous: to the login page; signed in without the editor role: 403."""

    @login_required
    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not has_role(request.user, EDITOR):
            raise PermissionDenied("This page is for editors.")
        return view(request, *args, **kwargs)

    return checked


def _item(item_id: int) -> ContentItem:
    try:
        return review.get_item(item_id)
    except StudioError as exc:
        raise Http404(exc.message) from exc


def _editors():
    """Who an item can be assigned to: active users with the editor role (superusers have all)."""
    return (
        get_user_model()
        .objects.filter(Q(groups__name=EDITOR) | Q(is_superuser=True), is_active=True)
        .distinct()
        .order_by("username")
    )


def _dates(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _dates(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates(v) for v in value]
    if isinstance(value, str) and (key in DATETIME_KEYS or key == "due_date"):
        try:
            return date.fromisoformat(value) if key == "due_date" else datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _failing(item: ContentItem) -> int:
    """Failing checks nobody has overridden yet."""
    return sum(
        1
        for c in item.checks
        if isinstance(c, dict) and c.get("status") == "fail" and c.get("id") not in item.overrides
    )


def _row(item: ContentItem, today: date) -> dict[str, Any]:
    overdue = bool(item.due_date and item.due_date < today and item.state not in EXPORTABLE)
    return {
        **_dates(present.summary(item)),
        "state_label": STATE_LABELS.get(item.state, item.state),
        "failing": _failing(item),
        "overdue": overdue,
    }


# --- The dashboard ---------------------------------------------------------------------------


def _dashboard(request: HttpRequest, form: BriefForm, status: int = 200) -> HttpResponse:
    state = request.GET.get("state", "")
    if state and state not in State.values:
        return HttpResponseBadRequest(f"state must be one of: {', '.join(State.values)}.")
    q, assignee = request.GET.get("q", "").strip(), request.GET.get("assignee", "").strip()
    mine = request.GET.get("mine") == "1"
    items = ContentItem.objects.select_related("brief", "assignee")
    if q:
        items = items.filter(Q(title__icontains=q) | Q(brief__keyphrase__icontains=q))
    if mine:
        items = items.filter(assignee=request.user)
    elif assignee:
        items = items.filter(assignee__username=assignee)
    # The tabs count what the other filters leave, so a search shows where its hits are.
    counts = dict(items.order_by().values_list("state").annotate(n=Count("id")))
    if state:
        items = items.filter(state=state)
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    today = timezone.localdate()
    kept = {k: v for k, v in {"q": q, "assignee": assignee, "mine": "1" if mine else ""}.items() if v}
    tabs = [{"label": "all", "count": sum(counts.values()), "query": urlencode(kept), "current": not state}]
    tabs += [
        {
            "label": STATE_LABELS[s],
            "count": counts.get(s, 0),
            "query": urlencode(kept | {"state": s}),
            "current": s == state,
        }
        for s in State.values
    ]
    return render(
        request,
        "studio/dashboard.html",
        {
            "tabs": tabs,
            "state": state,
            "state_label": STATE_LABELS.get(state, ""),
            "q": q,
            "assignee": assignee,
            "mine": mine,
            "page": page,
            "page_query": urlencode(kept | ({"state": state} if state else {})),
            "rows": [_row(i, today) for i in page],
            "editors": _editors(),
            "reviewers": _reviewers(request, today),
            "form": form,
        },
        status=status,
    )


def _reviewers(request: HttpRequest, today: date) -> list[dict[str, Any]]:
    """Per editor, the assigned items that wait on them: in review or with changes requested."""
    waiting = (
        ContentItem.objects.filter(state__in=AWAITING_REVIEW, assignee__isnull=False)
        .select_related("brief", "assignee")
        .order_by(F("due_date").asc(nulls_last=True), "updated_at")
    )
    by_editor: dict[int, list] = defaultdict(list)
    people = {user.pk: user for user in _editors()}
    for item in waiting:
        by_editor[item.assignee_id].append(_row(item, today))
        people.setdefault(item.assignee_id, item.assignee)  # assigned before losing the role
    return [
        {"name": user.get_username(), "is_me": pk == request.user.pk, "items": by_editor.get(pk, [])}
        for pk, user in sorted(people.items(), key=lambda pair: pair[1].get_username())
    ]


@require_GET
@editor_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, BriefForm())


@require_POST
@editor_required
def new_brief(request: HttpRequest) -> HttpResponse:
    """The new-brief form: the item is created and its generation queued, then its page opens.
    Invalid input comes back on the dashboard with the errors and everything typed kept."""
    form = BriefForm(request.POST)
    if form.is_valid():
        try:
            item = create_brief(request.user, form.cleaned_data)
        except StudioError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Brief saved: the article is being written.")
            return redirect("studio-item", item_id=item.pk)
    return _dashboard(request, form, status=400)


# --- One item's page -------------------------------------------------------------------------


def _edit_values(item: ContentItem) -> dict[str, Any]:
    return {
        "revision": item.revision,
        **{name: getattr(item, name) for name in SCALAR_FIELDS},
        "sections": [
            {"id": s.get("id", ""), "heading": s.get("heading", ""), "text": s.get("text", "")}
            for s in item.sections
            if isinstance(s, dict)
        ],
        "faq": [
            {"question": f.get("question", ""), "answer": f.get("answer", "")}
            for f in item.faq
            if isinstance(f, dict)
        ],
    }


def _text(request: HttpRequest, name: str) -> str:
    """A posted text: browsers send CRLF line ends from textareas, the item stores LF; without
    this an untouched field would look edited and make a new revision."""
    return request.POST.get(name, "").replace("\r\n", "\n").replace("\r", "\n")


def _texts(request: HttpRequest, name: str) -> list[str]:
    return [v.replace("\r\n", "\n").replace("\r", "\n") for v in request.POST.getlist(name)]


def _posted_edit(request: HttpRequest) -> dict[str, Any]:
    """The edit form as submitted, in _edit_values' shape (to save it, or to show it again)."""
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


def _diff_lines(diff: str) -> list[dict[str, str]]:
    """A unified diff's lines with a kind each, for the + / - styling."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "ctx")
        lines.append({"kind": kind, "text": line})
    return lines


def _gallery(item: ContentItem, data: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict]]:
    """Candidates per image prompt, and those whose prompt no longer exists."""
    slots = [
        {"slot": n, "number": n + 1, "spec": spec if isinstance(spec, dict) else {}, "images": []}
        for n, spec in enumerate(item.image_prompts)
    ]
    orphans = []
    for image in data:
        (slots[image["slot"]]["images"] if image["slot"] < len(slots) else orphans).append(image)
    return slots, orphans


def _page(
    request: HttpRequest,
    item: ContentItem,
    *,
    edit: dict | None = None,
    conflict: bool = False,
    status: int = 200,
) -> HttpResponse:
    data = _dates(present.detail(item))
    edit = edit or _edit_values(item)
    comments: dict[str, list] = defaultdict(list)
    for c in data["comments"]:
        comments[c["anchor"]].append(c)
    # Comment forms sit outside the edit form (forms do not nest); each textarea joins its own
    # form by the `form` attribute, whose id must be a safe one, not the section's id.
    sections = [
        {**s, "dom": f"s{n}", "comments": comments.pop(s["id"], [])} for n, s in enumerate(edit["sections"])
    ]
    field_comments = {anchor: comments.pop(anchor, []) for anchor in FIELD_ANCHORS}
    comment_forms = [{"anchor": a, "dom": a} for a in FIELD_ANCHORS]
    comment_forms += [{"anchor": s["id"], "dom": s["dom"]} for s in sections]
    checks = [
        {**c, "override": item.overrides.get(c.get("id")), "failing": c.get("status") == "fail"}
        for c in data["checks"]
        if isinstance(c, dict)
    ]
    slots, orphans = _gallery(item, data["images"])
    revisions = [
        {**r, "first": n == 0, "changed": [(name, _diff_lines(diff)) for name, diff in r["changed"].items()]}
        for n, r in enumerate(data["revisions"])
    ][::-1]  # newest first
    can = {name: can_proceed(getattr(item, name)) for name in MOVES}
    return render(
        request,
        "studio/item.html",
        {
            "d": data,
            "style_guide": item.brief.style_guide,  # not in present.detail
            "state_label": STATE_LABELS.get(item.state, item.state),
            "generating": item.generation in (ContentItem.Generation.QUEUED, ContentItem.Generation.RUNNING),
            "generated": item.generation == ContentItem.Generation.DONE,
            "edit": edit,
            "conflict": conflict,
            "sections": sections,
            "field_comments": field_comments,
            "comment_forms": comment_forms,
            "other_comments": [c for anchored in comments.values() for c in anchored],
            "checks": checks,
            "needs_overrides": can["approve"] and any(c["failing"] and not c["override"] for c in checks),
            "can": can,
            "slots": slots,
            "orphan_images": orphans,
            "revisions": revisions,
            "editors": _editors(),
            "exports": EXPORT_FORMATS if item.state in EXPORTABLE else (),
        },
        status=status,
    )


@require_GET
@editor_required
def item_page(request: HttpRequest, item_id: int) -> HttpResponse:
    return _page(request, _item(item_id))


@require_POST
@editor_required
def save(request: HttpRequest, item_id: int) -> HttpResponse:
    """Save the edit form from the revision it was opened at. Refused (someone saved since, a
    value too long): the page again with the message and the editor's text kept in the form."""
    item = _item(item_id)
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
        return _page(request, _item(item_id), edit=edit, conflict=conflict, status=exc.status)
    if saved.revision == base:
        messages.info(request, "Nothing changed; nothing was saved.")
    elif saved.state != item.state:  # an approved or published item goes back to review
        messages.success(request, f"Saved as revision {saved.revision}; it needs a new approval.")
    else:
        messages.success(request, f"Saved as revision {saved.revision}.")
    return redirect("studio-item", item_id=item.pk)


def _action(view: Callable[..., str]) -> Callable[..., HttpResponse]:
    """A POST on an item: its success message, or the refusal's, then back to the item's page."""

    @require_POST
    @editor_required
    @wraps(view)
    def acted(request: HttpRequest, item_id: int, **kwargs: Any) -> HttpResponse:
        item = _item(item_id)
        try:
            messages.success(request, view(request, item, **kwargs))
        except StudioError as exc:
            messages.error(request, exc.message)
        return redirect("studio-item", item_id=item.pk)

    return acted


@_action
def regenerate(request: HttpRequest, item: ContentItem) -> str:
    """One part rewritten by the model, now (a few seconds), saved as a new revision."""
    from content import generation
    from inference.base import InferenceError

    if item.generation != ContentItem.Generation.DONE:
        raise StudioError("generating", "The article is still being generated.")
    part = request.POST.get("part", "")
    try:
        saved = generation.regenerate_part(item, part, user=request.user)
    except InferenceError as exc:
        raise StudioError(exc.code, f"The model could not rewrite it: {exc.message}", 503) from exc
    section = next((s for s in item.sections if isinstance(s, dict) and s.get("id") == part), None)
    label = PART_LABELS.get(part) or f"the section “{section['heading'] if section else part}”"
    return f"Regenerated {label}: revision {saved.revision}."


@_action
def move(request: HttpRequest, item: ContentItem) -> str:
    to = request.POST.get("to", "")
    overrides = {}
    if to == State.APPROVED:
        # The reasons typed beside the failing checks (the service refuses blank ones).
        for check_id in (c.get("id") for c in item.checks if isinstance(c, dict)):
            why = request.POST.get(f"override_{check_id}", "").strip()
            if why:
                overrides[check_id] = why
    review.transition(item, to, user=request.user, reason=_text(request, "reason"), overrides=overrides)
    return f"The item is now {STATE_LABELS[to]}."


@_action
def comment(request: HttpRequest, item: ContentItem) -> str:
    review.add_comment(item, request.user, request.POST.get("anchor", ""), _text(request, "text"))
    return "Comment added."


@_action
def assign(request: HttpRequest, item: ContentItem) -> str:
    raw, raw_due = request.POST.get("assignee", "").strip(), request.POST.get("due_date", "").strip()
    assignee = _editors().filter(pk=int(raw)).first() if raw.isdigit() else None
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

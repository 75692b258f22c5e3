"""The email desk's review queue in the staff console (agents only): the queue by status, one
ticket with its thread, triage, draft, versions, sends and events, and the decisions on it as
plain HTML forms (they work without JavaScript).

Every decision goes through assistant/desk/review.py, as the API's do; the pages show the same
dicts as the API (assistant/desk/present.py). A refused decision (a conflict, a stale draft, a
missing reason) comes back as a message on the ticket's page, never as an error page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_fsm import can_proceed

from assistant import copilot
from assistant.desk import present, review
from assistant.desk.tickets import ReviewError, get_ticket
from assistant.models import Draft, InboundMail, Ticket
from core.pages import post_action
from core.roles import AGENT, role_required, users_with_role

PAGE_SIZE = 50
# The queue opens on what waits for an agent; the other statuses follow in the model's order.
TABS = [Ticket.Status.NEEDS_REVIEW] + [s for s in present.STATUSES if s != Ticket.Status.NEEDS_REVIEW]
STATUS_LABELS = {value: label.lower() for value, label in Ticket.Status.choices}
UNREADABLE = "unreadable"  # the queue page's tab of inbound mail that failed (no ticket has it)
# present's dicts carry ISO strings (the API's format); the templates want datetimes.
DATE_KEYS = {"created_at", "updated_at", "date", "at", "sent_at", "next_attempt_at"}


# Anonymous: to the login page; signed in without the agent role: 403.
agent_required = role_required(AGENT)


def _ticket(ticket_id: int) -> Ticket:
    try:
        return get_ticket(ticket_id)
    except ReviewError as exc:
        raise Http404(exc.message) from exc


def _with_datetimes(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _with_datetimes(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_datetimes(v) for v in value]
    if key in DATE_KEYS and isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:  # a "date" inside stored JSON (triage, citations) that is not ours
            return value
    return value


@require_GET
@agent_required
def desk(request: HttpRequest) -> HttpResponse:
    """The review queue of one status, by priority and then age; or the unreadable mail."""
    status = request.GET.get("status", Ticket.Status.NEEDS_REVIEW)
    if status == UNREADABLE:
        return _unreadable(request)
    if status not in present.STATUSES:
        return HttpResponseBadRequest(f"status must be one of: {', '.join([*present.STATUSES, UNREADABLE])}.")
    current = Draft.objects.filter(ticket=OuterRef("pk")).order_by("-version").values("low_confidence")[:1]
    tickets = present.queue(status).annotate(draft_low_confidence=Subquery(current))
    page = Paginator(tickets, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "console/desk.html",
        {
            "status": status,
            "status_label": STATUS_LABELS[status],
            "tabs": _tabs(),
            "page": page,
            "rows": [
                {**_with_datetimes(present.summary(t)), "low_confidence": bool(t.draft_low_confidence)}
                for t in page
            ],
        },
    )


def _tabs() -> list[dict[str, Any]]:
    counts = dict(Ticket.objects.order_by().values_list("status").annotate(n=Count("id")))
    failed = InboundMail.objects.filter(status=InboundMail.Status.FAILED).count()
    return [{"status": s, "label": STATUS_LABELS[s], "count": counts.get(s, 0)} for s in TABS] + [
        {"status": UNREADABLE, "label": "unreadable mail", "count": failed}
    ]


def _unreadable(request: HttpRequest) -> HttpResponse:
    """Mail that could not be parsed in time or stored: no ticket has it, so agents see it here,
    with the error and its From and Subject as written; the raw mail is kept (admin: Inbound
    mails)."""
    failed = InboundMail.objects.filter(status=InboundMail.Status.FAILED).order_by("-received_at", "-id")
    page = Paginator(failed, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "console/desk.html",
        {
            "status": UNREADABLE,
            "status_label": "unreadable mail",
            "tabs": _tabs(),
            "page": page,
            "unreadable": page,
        },
    )


def _link(url: Any) -> str | None:
    """Only web links become links: a javascript: or data: URL in a citation stays text."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    return url.strip() if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _triage_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    reasons = data["triage"] if isinstance(data["triage"], dict) else {}
    rows = []
    for name in ("category", "priority", "language"):
        why = reasons.get(name) if isinstance(reasons.get(name), dict) else {}
        scores = why.get("scores") if isinstance(why.get("scores"), dict) else {}
        probabilities = why.get("probabilities") if isinstance(why.get("probabilities"), dict) else {}
        rows.append(
            {
                "name": name,
                **data[name],
                "scores": sorted(scores.items(), key=lambda item: -item[1]),
                "probabilities": sorted(probabilities.items(), key=lambda item: -item[1]),
                "nearest": [n for n in why.get("nearest") or [] if isinstance(n, dict)],
            }
        )
    return rows


def _agents():
    """Who a ticket can be assigned to."""
    return users_with_role(AGENT)


@require_GET
@agent_required
def ticket(request: HttpRequest, ticket_id: int) -> HttpResponse:
    """One ticket: thread, triage and why, the current draft with flags, citations and each
    sentence's support, versions, outbound sends, events, and the decision forms."""
    found = _ticket(ticket_id)
    data = _with_datetimes(present.detail(found))
    draft = data["draft"]
    if draft is not None:
        citations = [c for c in draft["citations"] or [] if isinstance(c, dict)]
        draft["citations"] = [{**c, "link": _link(c.get("url"))} for c in citations]
    return render(
        request,
        "console/desk_ticket.html",
        {
            "t": data,
            "status_label": STATUS_LABELS.get(found.status, found.status),
            "triage": _triage_rows(data),
            "agents": _agents(),
            "assigned_id": found.assigned_to_id,
            # The forms the ticket's status allows (the service checks again on submit).
            "can_approve": can_proceed(found.approve),
            "can_reject": can_proceed(found.reject),
            "can_regenerate": found.status in review.REGENERATABLE,
            # The copilot (templates/console/_desk_copilot.html): canned replies filled for this
            # ticket; the suggested reply is asked for from the page (assistant/chat/copilot_views.py).
            "macros": copilot.macro_items(request.user, copilot.ticket_values(found, request.user)),
        },
    )


def _body(request: HttpRequest) -> str | None:
    """The textarea's text: browsers send CRLF line ends, drafts are stored with LF; without
    this an untouched draft would look edited and become a new version."""
    body = request.POST.get("body")
    return None if body is None else body.replace("\r\n", "\n").replace("\r", "\n")


def _version(request: HttpRequest) -> int | None:
    raw = request.POST.get("version", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ReviewError("bad_request", "The draft version is not a number.", 400) from exc


# A POST decision on a ticket: its success message, or the refusal's, then back to the page.
_decision = post_action(_ticket, "desk-ticket", "ticket_id", agent_required)


@_decision
def approve(request: HttpRequest, ticket: Ticket) -> str:
    suggestion = copilot.check_suggestion_id(request.POST.get("suggestion"))  # one the agent inserted
    mail = review.approve(
        ticket,
        request.user,
        _body(request),
        expected_version=_version(request),
        confirmed=request.POST.get("confirmed") == "1",  # "I have checked the flagged sentences"
    )
    copilot.record_desk_send(ticket, mail.draft, suggestion, request.user)
    return f"Approved version {mail.draft.version}: the reply to {mail.to} is being sent."


@_decision
def edit(request: HttpRequest, ticket: Ticket) -> str:
    draft = review.edit(ticket, request.user, _body(request), expected_version=_version(request))
    return f"Saved as version {draft.version}; nothing was sent."


@_decision
def reject(request: HttpRequest, ticket: Ticket) -> str:
    review.reject(ticket, request.user, request.POST.get("reason", ""))
    return "Rejected: no reply will be sent."


@_decision
def regenerate(request: HttpRequest, ticket: Ticket) -> str:
    review.queue_regenerate(ticket, request.user)
    return "A new draft is being written; reload this page in a moment to see it."


@_decision
def reassign(request: HttpRequest, ticket: Ticket) -> str:
    raw = request.POST.get("agent", "").strip()
    assignee = None
    if raw:
        assignee = _agents().filter(pk=int(raw)).first() if raw.isdigit() else None
        if assignee is None:
            raise ReviewError("bad_request", "No such agent.", 400)
    review.reassign(ticket, request.user, assignee)
    return f"Assigned to {assignee.get_username()}." if assignee else "Assigned to nobody."

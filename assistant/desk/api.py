"""Email desk API: the review queue for integrations. Staff with the agent role.

Writes are decisions (approve, reject, edit, regenerate, reassign) and go through
assistant/desk/review.py like the console's; conflicts (approving twice, a ticket someone else
just changed) are 409 with a code saying which.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest
from ninja import Body, Query, Router, Schema, Status

from assistant.desk import present, review
from assistant.desk.review import ReviewError
from core.auth import require_api_role
from core.errors import DomainError
from core.roles import AGENT

router = Router(tags=["email desk"])


class TicketFilter(Schema):
    status: str | None = None
    limit: int = 50
    offset: int = 0


class ApproveIn(Schema):
    body: str | None = None  # the reply as the agent edited it; omitted: the current draft as is
    version: int | None = None  # the draft version the agent reviewed; a newer one is a conflict


class RejectIn(Schema):
    reason: str


class DraftIn(Schema):
    body: str
    version: int | None = None  # the draft version the agent edited (0: none); a newer one is a conflict


class ReassignIn(Schema):
    agent: str | None = None  # a username; null: unassigned


def _ticket(request: HttpRequest, ticket_id: str):
    require_api_role(request, AGENT)
    try:
        return review.get_ticket(ticket_id)
    except ReviewError as exc:
        raise DomainError(exc.code, exc.message, exc.status) from exc


def _decide(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ReviewError as exc:
        raise DomainError(exc.code, exc.message, exc.status) from exc


@router.get("/tickets", summary="Tickets by priority and age, optionally of one status")
def list_tickets(request: HttpRequest, filters: Query[TicketFilter]) -> dict[str, Any]:
    require_api_role(request, AGENT)
    if filters.status is not None and filters.status not in present.STATUSES:
        raise DomainError("bad_status", f"status must be one of: {', '.join(present.STATUSES)}.", 400)
    limit, offset = min(max(filters.limit, 1), 200), max(filters.offset, 0)
    tickets = present.queue(filters.status)
    return {
        "count": tickets.count(),
        "items": [present.summary(t) for t in tickets[offset : offset + limit]],
    }


@router.get("/tickets/{ticket_id}", summary="A ticket: thread, current draft with citations, triage, history")
def get_ticket(request: HttpRequest, ticket_id: str) -> dict[str, Any]:
    return present.detail(_ticket(request, ticket_id))


@router.post("/tickets/{ticket_id}/approve", response={202: dict}, summary="Approve the draft and send it")
def approve(request: HttpRequest, ticket_id: str, payload: Body[ApproveIn] = None):
    ticket = _ticket(request, ticket_id)
    payload = payload or ApproveIn()
    mail = _decide(review.approve, ticket, request.user, payload.body, expected_version=payload.version)
    return Status(202, {"ticket": ticket.pk, "status": "sending", "outbound": present.outbound_data(mail)})


@router.post("/tickets/{ticket_id}/reject", summary="Reject the draft, with a reason: nothing is sent")
def reject(request: HttpRequest, ticket_id: str, payload: RejectIn) -> dict[str, Any]:
    ticket = _decide(review.reject, _ticket(request, ticket_id), request.user, payload.reason)
    return present.summary(ticket)


@router.post(
    "/tickets/{ticket_id}/draft", response={201: dict}, summary="Save an edited draft as a new version"
)
def edit_draft(request: HttpRequest, ticket_id: str, payload: DraftIn):
    draft = _decide(
        review.edit, _ticket(request, ticket_id), request.user, payload.body, expected_version=payload.version
    )
    return Status(201, present.draft_data(draft))


@router.post("/tickets/{ticket_id}/regenerate", response={202: dict}, summary="Ask the model for a new draft")
def regenerate(request: HttpRequest, ticket_id: str):
    from assistant.tasks import desk_regenerate

    ticket = _ticket(request, ticket_id)
    _decide(review.check_regenerate, ticket)
    desk_regenerate.delay(ticket.pk, request.user.pk)
    return Status(202, {"ticket": ticket.pk, "queued": True})


@router.post("/tickets/{ticket_id}/reassign", summary="Assign the ticket to an agent, or to nobody")
def reassign(request: HttpRequest, ticket_id: str, payload: ReassignIn) -> dict[str, Any]:
    ticket = _ticket(request, ticket_id)
    assignee = None
    if payload.agent:
        assignee = get_user_model().objects.filter(username=payload.agent).first()
        if assignee is None:
            raise DomainError("unknown_agent", "No such agent.", 400)
    return present.summary(_decide(review.reassign, ticket, request.user, assignee))

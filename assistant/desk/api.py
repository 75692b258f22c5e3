"""Email desk API: the review queue for integrations (staff with the agent role), and the inbound
mail webhook for mail providers.

Writes are decisions (approve, reject, edit, regenerate, reassign) and go through
assistant/desk/review.py like the console's; conflicts (approving twice, a ticket someone else
just changed, a reply with sentences the sources do not support that the agent did not confirm
checking) are 409 with a code saying which (a ReviewError, turned into the error body by
config/api.py).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from ninja import Body, Query, Router, Schema, Status

from assistant.desk import present, review
from assistant.desk.inbound import store_raw
from assistant.desk.tickets import get_ticket as find_ticket
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
    # The agent checked the sentences flagged as not supported by the sources; without it a
    # version with such sentences is refused (409 "unchecked_sentences") and nothing is sent.
    confirmed: bool = False


class RejectIn(Schema):
    reason: str


class DraftIn(Schema):
    body: str
    version: int | None = None  # the draft version the agent edited (0: none); a newer one is a conflict


class ReassignIn(Schema):
    agent: str | None = None  # a username; null: unassigned


def _ticket(request: HttpRequest, ticket_id: str):
    require_api_role(request, AGENT)
    return find_ticket(ticket_id)


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
    mail = review.approve(
        ticket, request.user, payload.body, expected_version=payload.version, confirmed=payload.confirmed
    )
    return Status(202, {"ticket": ticket.pk, "status": "sending", "outbound": present.outbound_data(mail)})


@router.post("/tickets/{ticket_id}/reject", summary="Reject the draft, with a reason: nothing is sent")
def reject(request: HttpRequest, ticket_id: str, payload: RejectIn) -> dict[str, Any]:
    ticket = review.reject(_ticket(request, ticket_id), request.user, payload.reason)
    return present.summary(ticket)


@router.post(
    "/tickets/{ticket_id}/draft", response={201: dict}, summary="Save an edited draft as a new version"
)
def edit_draft(request: HttpRequest, ticket_id: str, payload: DraftIn):
    ticket = _ticket(request, ticket_id)
    draft = review.edit(ticket, request.user, payload.body, expected_version=payload.version)
    return Status(201, present.draft_data(draft))


@router.post("/tickets/{ticket_id}/regenerate", response={202: dict}, summary="Ask the model for a new draft")
def regenerate(request: HttpRequest, ticket_id: str):
    ticket = _ticket(request, ticket_id)
    review.queue_regenerate(ticket, request.user)
    return Status(202, {"ticket": ticket.pk, "queued": True})


@router.post("/tickets/{ticket_id}/reassign", summary="Assign the ticket to an agent, or to nobody")
def reassign(request: HttpRequest, ticket_id: str, payload: ReassignIn) -> dict[str, Any]:
    ticket = _ticket(request, ticket_id)
    assignee = _user_named(payload.agent) if payload.agent else None
    return present.summary(review.reassign(ticket, request.user, assignee))


def _user_named(username: str):
    found = get_user_model().objects.filter(username=username).first()
    if found is None:
        raise DomainError("unknown_agent", "No such agent.", 400)
    return found


@router.post(
    "/inbound/mail",
    auth=None,
    response={202: dict},
    summary="Inbound mail webhook: a raw MIME message, signed with HMAC-SHA256 of the body",
)
def inbound_mail(request: HttpRequest):
    """For mail providers' inbound webhooks. The body is the raw message (message/rfc822); the
    header X-Parley-Signature is the hex HMAC-SHA256 of the body under MAIL_INBOUND_SECRET.
    The mail is stored and queued ("received"; "duplicate" for the same bytes again): it is
    parsed by the worker, never in the web process."""
    secret = settings.MAIL_INBOUND_SECRET
    if not secret:
        raise DomainError("not_found", "The inbound mail webhook is not configured.", 404)
    # Read from the stream with our own limit (mail is bigger than Django's form-body limit).
    body = request.read(settings.MAIL_MAX_MESSAGE_BYTES + 1)
    if len(body) > settings.MAIL_MAX_MESSAGE_BYTES:
        raise DomainError("too_large", "The message is over the size limit.", 413)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Parley-Signature", "")):
        raise DomainError("bad_signature", "The signature does not match the body.", 401)
    if not body.strip():
        raise DomainError("empty_message", "The body is empty.", 400)
    inbound = store_raw(body, source="http")
    return Status(202, {"id": inbound.pk, "status": inbound.status})

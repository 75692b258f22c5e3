"""A ticket's one transition function and the desk's error, which every desk module builds on:
inbound mail reopens and sets aside, outbound marks sent or failed, review decides.

`move` checks the move is allowed from the ticket's status, saves it only if the status is still
the one it was read with (django-fsm-2's optimistic lock: of two agents approving at once exactly
one wins, the other gets a conflict) and records a TicketEvent with who, when and why.
"""

from __future__ import annotations

from typing import Any

from assistant.models import Draft, Ticket, TicketEvent
from core import transitions
from core.errors import DomainError


class ReviewError(DomainError):
    default_status = 409


TICKETS = transitions.Workflow(
    "status",
    TicketEvent,
    "ticket",
    ReviewError,
    lost_race="Someone else changed this ticket first (now {current}).",
    refused="A ticket that is {state} cannot be {verb}.",
)


def move(ticket: Ticket, name: str, *, user=None, reason: str = "", data: dict | None = None) -> Ticket:
    return TICKETS.move(ticket, name, user=user, reason=reason, data=data, verb=_VERBS[name])


_VERBS = {
    "reopen": "reopened",
    "draft_ready": "given a draft",
    "nothing_to_answer": "set aside",
    "approve": "approved",
    "reject": "rejected",
    "sent": "marked sent",
    "send_failed": "marked failed",
}


def get_ticket(ticket_id: Any) -> Ticket:
    try:
        return Ticket.objects.get(pk=int(ticket_id))
    except (TypeError, ValueError, Ticket.DoesNotExist) as exc:
        raise ReviewError("not_found", "No such ticket.", 404) from exc


def current_draft(ticket: Ticket) -> Draft | None:
    return ticket.drafts.order_by("-version").first()

"""What a visitor is told when they ask for a person and nobody from the team is online: that
nobody is, when to expect a reply (the site's opening hours, assistant/models/hours.py), and the
email form (assistant/chat/offline.py takes the address). Frames only; no writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from assistant.models import Conversation, Ticket
from assistant.models.hours import HoursError, describe_opening, opening


def offer(conversation: Conversation, now: datetime | None = None) -> dict[str, Any]:
    """The offline frame for this conversation: nobody is online, when to expect a reply, and
    (unless it already has a ticket) the email form."""
    now = now or timezone.now()
    site = conversation.site
    hours, tz_name, reply_time = (
        (site.opening_hours, site.time_zone, site.reply_time.strip()) if site else ("", "UTC", "")
    )
    try:
        state = opening(hours, tz_name, now)
    except HoursError:  # saved past the admin form's check (a script): no hours rather than a crash
        state = opening("", "UTC", now)
    back = describe_opening(state.next_opening, tz_name, now) if state.next_opening else None
    ticket = conversation.ticket if conversation.ticket_id else None
    words = ["Nobody from our team is online right now."]
    if back and state.open_now is False:
        words.append(f"We're back {back}.")
    if reply_time:
        words.append(f"We usually reply {reply_time}.")
    if ticket is not None:
        words.append(f"We'll answer you by email at {ticket.customer_email}.")
    else:
        words.append("Leave your email address and we'll answer you there.")
    return {
        "type": "offline",
        "conversation": str(conversation.id),
        "open_now": state.open_now,
        "back_at": state.next_opening.isoformat() if state.next_opening else None,
        "back": back,
        "time_zone": tz_name or "UTC",
        "reply_time": reply_time,
        "ticket": ticket_fields(ticket) if ticket else None,
        "text": " ".join(words),
    }


def ticket_fields(ticket: Ticket) -> dict[str, str]:
    return {"email": ticket.customer_email, "reference": ticket.reference}


def ticket_frame(conversation: Conversation, ticket: Ticket) -> dict[str, Any]:
    return {
        "type": "ticket",
        "conversation": str(conversation.id),
        **ticket_fields(ticket),
        "text": f"Thanks, we'll answer at {ticket.customer_email}.",
    }

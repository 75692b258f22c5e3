"""Tickets as the review queue shows them (the console page and the JSON API share these)."""

from __future__ import annotations

from typing import Any

from django.db.models import IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from assistant.desk import drafting
from assistant.models import Draft, MailMessage, OutboundMail, Ticket, TriageLabel
from core.present import iso

STATUSES = [choice for choice, _ in Ticket.Status.choices]


def queue(status: str | None = None) -> QuerySet[Ticket]:
    """Tickets by priority (the labels' rank; untriaged last) and then age, oldest first."""
    rank = TriageLabel.objects.filter(kind=TriageLabel.Kind.PRIORITY, name=OuterRef("priority")).values(
        "rank"
    )[:1]
    tickets = Ticket.objects.select_related("assigned_to").annotate(
        priority_rank=Coalesce(Subquery(rank, output_field=IntegerField()), Value(99))
    )
    if status:
        tickets = tickets.filter(status=status)
    return tickets.order_by("priority_rank", "created_at", "id")


def summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.pk,
        "reference": ticket.reference,
        "subject": ticket.subject,
        "customer": {"email": ticket.customer_email, "name": ticket.customer_name},
        "status": ticket.status,
        "assigned_to": ticket.assigned_to.get_username() if ticket.assigned_to else None,
        "category": {"label": ticket.category or None, "confidence": ticket.category_confidence},
        "priority": {"label": ticket.priority or None, "confidence": ticket.priority_confidence},
        "language": {"label": ticket.language or None, "confidence": ticket.language_confidence},
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
    }


def draft_data(draft: Draft | None, *, full: bool = True) -> dict[str, Any] | None:
    if draft is None:
        return None
    data = {
        "version": draft.version,
        "body": draft.body,
        "author": draft.author.get_username() if draft.author else None,
        "low_confidence": draft.low_confidence,
        "confidence": draft.confidence,
        "flags": draft.flags,
        "unsupported": drafting.unsupported_count(draft),
        "citations": draft.citations,
        "created_at": iso(draft.created_at),
    }
    if full:
        data |= {
            "support": support_data(draft),
            "replying_to": draft.replying_to.message_id if draft.replying_to else None,
            "model_version": draft.model_version.key if draft.model_version else None,
            "prompt_template": draft.prompt_template,
            "retrieved": draft.retrieved,
            "prompt_tokens": draft.prompt_tokens,
            "completion_tokens": draft.completion_tokens,
            "latency_ms": draft.latency_ms,
        }
    return data


def support_data(draft: Draft) -> list[dict[str, Any]]:
    """Each checked sentence of the draft's body (answers/support.py's stored shape) with the
    title of the source that supports it, as the agent is shown it."""
    titles = {c.get("n"): c.get("title") for c in draft.citations or [] if isinstance(c, dict)}
    return [
        {**record, "title": titles.get(record.get("source")) or None}
        for record in draft.support or []
        if isinstance(record, dict)
    ]


def message_data(message: MailMessage) -> dict[str, Any]:
    return {
        "id": message.pk,
        "direction": message.direction,
        "message_id": message.message_id,
        "from": {"email": message.from_email, "name": message.from_name},
        "to": message.to,
        "subject": message.subject,
        "date": iso(message.sent_at or message.created_at),
        "text": message.text,
        "reply_text": message.reply_text,
        "automated": message.automated or None,
        "defects": message.defects or None,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "skipped": a.skipped or None,
            }
            for a in message.attachments.all()
        ],
    }


def outbound_data(mail: OutboundMail) -> dict[str, Any]:
    return {
        "id": mail.pk,
        "draft_version": mail.draft.version,
        "status": mail.status,
        "message_id": mail.message_id,
        "attempts": mail.attempts,
        "next_attempt_at": iso(mail.next_attempt_at) if mail.status == OutboundMail.Status.RETRY else None,
        "sent_at": iso(mail.sent_at),
        "last_error": mail.last_error or None,
        "approved_by": mail.approved_by.get_username() if mail.approved_by else None,
    }


def detail(ticket: Ticket) -> dict[str, Any]:
    drafts = list(ticket.drafts.select_related("author", "model_version", "replying_to").order_by("version"))
    return {
        **summary(ticket),
        "triage": ticket.triage,
        "thread": [message_data(m) for m in ticket.messages.prefetch_related("attachments")],
        "draft": draft_data(drafts[-1] if drafts else None),
        "versions": [draft_data(d, full=False) for d in drafts],
        "outbound": [
            outbound_data(m) for m in ticket.outbound.select_related("draft", "approved_by").order_by("id")
        ],
        "events": [
            {
                "action": e.action,
                "from": e.from_status or None,
                "to": e.to_status or None,
                "user": e.user.get_username() if e.user else None,
                "reason": e.reason or None,
                "at": iso(e.created_at),
            }
            for e in ticket.events.select_related("user")
        ],
    }

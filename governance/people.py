"""A person's data found by their email address: export (GDPR art. 15 and 20) and erasure
(art. 17) across the email desk, website chats, training data and the knowledge base.

What belongs to the person:
- tickets whose customer is the address (any case), with everything hanging off them: the thread's
  mail messages and their attachments (rows and files), drafts, outbound mail, ticket events; mail
  they sent into other threads; the raw inbound mail (rows and .eml files) they sent, including
  duplicates and mail that could not be parsed (found by envelope sender or in the raw bytes);
- training examples kept for their address or quoting it;
- chat conversations in which a visitor typed the address, and every conversation of the same
  visitor token (the same person);
- knowledge-base chunks that mention the address: rows, FAISS vectors and (through the
  collection stamp) the BM25 index.
Copies of the address in other people's records (a snippet of an erased chunk cited in another
chat, the address quoted in someone else's mail or a draft's prompt) are replaced by "[erased]".

A website visitor without an address is handled by assistant/chat/privacy.py (by visitor token).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from assistant.desk.inbound import mail_dir, remove_stored_files
from assistant.models import (
    Attachment,
    Conversation,
    Draft,
    InboundMail,
    MailMessage,
    Message,
    OutboundMail,
    Ticket,
    TicketEvent,
    TrainingExample,
)
from core.audit import record_audit, subject_hash
from core.present import iso
from retrieval.index import get_index
from retrieval.models import Chunk

log = logging.getLogger(__name__)

ERASED = "[erased]"


class PersonError(Exception):
    """A request about a person that cannot be served: code for clients, message for people."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(message)


def normalise_email(email: str) -> str:
    """The address as matched everywhere: trimmed and lower-cased (the desk matches addresses
    without regard to case; so does erasure)."""
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise PersonError("invalid_email", "That is not a valid email address.") from exc
    return email.lower()


# --- Finding the person's rows -----------------------------------------------------------------


def _tickets(email: str) -> models.QuerySet[Ticket]:
    return Ticket.objects.filter(customer_email__iexact=email)


def _mail_messages(email: str) -> models.QuerySet[MailMessage]:
    return MailMessage.objects.filter(Q(ticket__customer_email__iexact=email) | Q(from_email__iexact=email))


def _inbound_mail(email: str) -> list[InboundMail]:
    """Raw mail from the person: what their messages were parsed from, what their server named as
    sender, and unlinked rows (duplicates, unparseable mail) whose raw bytes hold the address."""
    linked = set(_mail_messages(email).exclude(inbound=None).values_list("inbound_id", flat=True))
    rows = {m.pk: m for m in InboundMail.objects.filter(Q(pk__in=linked) | Q(envelope_from__iexact=email))}
    needle = email.encode()
    for row in InboundMail.objects.exclude(pk__in=rows).filter(mailmessage__isnull=True):
        try:
            if needle in (mail_dir() / row.path).read_bytes().lower():
                rows[row.pk] = row
        except OSError:
            continue  # the raw file is gone already: nothing of the person is left in it
    return list(rows.values())


def _training_examples(email: str) -> models.QuerySet[TrainingExample]:
    return TrainingExample.objects.filter(
        Q(customer_email__iexact=email)
        | Q(ticket__customer_email__iexact=email)
        | Q(question__icontains=email)
        | Q(answer__icontains=email)
    )


def _conversations(email: str) -> models.QuerySet[Conversation]:
    typed = Message.objects.filter(role=Message.Role.USER, text__icontains=email)
    ids = set(typed.values_list("conversation_id", flat=True))
    visitors = set(
        Conversation.objects.filter(pk__in=ids).exclude(visitor="").values_list("visitor", flat=True)
    )
    return Conversation.objects.filter(Q(pk__in=ids) | Q(visitor__in=visitors))


def _chunks(email: str) -> models.QuerySet[Chunk]:
    return Chunk.objects.select_related("document").filter(text__icontains=email)


# Where copies of the address can land in records that are not the person's: a chunk's snippet in
# another chat's citations or a draft's prompt, the address quoted in someone else's mail.
_COPIES: tuple[tuple[type[models.Model], tuple[str, ...]], ...] = (
    (Message, ("text", "citations")),
    (Draft, ("body", "prompt", "citations")),
    (TrainingExample, ("context", "sources")),
    (MailMessage, ("to", "text", "reply_text")),
    (OutboundMail, ("to", "text", "html")),
)


# --- Export --------------------------------------------------------------------------------------


def export_person(email: str, *, actor: Any = None) -> dict[str, Any]:
    """Everything stored about the person, as JSON-ready data."""
    email = normalise_email(email)
    tickets = _tickets(email).prefetch_related("messages__attachments", "drafts", "events")
    data = {
        "email": email,
        "exported_at": timezone.now().isoformat(),
        "tickets": [_ticket_data(t) for t in tickets],
        "mail_in_other_threads": [
            _mail_data(m)
            for m in MailMessage.objects.filter(from_email__iexact=email)
            .exclude(ticket__customer_email__iexact=email)
            .prefetch_related("attachments")
        ],
        "raw_mail": [
            {"received_at": m.received_at.isoformat(), "source": m.source, "status": m.status, "size": m.size}
            for m in _inbound_mail(email)
        ],
        "conversations": [
            _conversation_data(c) for c in _conversations(email).prefetch_related("messages__feedback")
        ],
        "training_examples": [
            {
                "source": e.source,
                "question": e.question,
                "answer": e.answer,
                "context": e.context,
                "created_at": e.created_at.isoformat(),
            }
            for e in _training_examples(email)
        ],
        "knowledge_base": [
            {"document": c.document.title, "source": c.document.url or c.document.source, "text": c.text}
            for c in _chunks(email)
        ],
    }
    record_audit(
        actor, "person.exported", target_type="person", target_id=subject_hash(email), counts=_counts(data)
    )
    return data


def _counts(data: dict[str, Any]) -> dict[str, int]:
    return {key: len(value) for key, value in data.items() if isinstance(value, list)}


def _ticket_data(ticket: Ticket) -> dict[str, Any]:
    return {
        "reference": ticket.reference,
        "subject": ticket.subject,
        "customer_name": ticket.customer_name,
        "status": ticket.status,
        "created_at": ticket.created_at.isoformat(),
        "messages": [_mail_data(m) for m in ticket.messages.all()],
        "drafts": [
            {"version": d.version, "body": d.body, "created_at": d.created_at.isoformat()}
            for d in ticket.drafts.all()
        ],
        "events": [
            {"action": e.action, "to_status": e.to_status, "reason": e.reason, "at": e.created_at.isoformat()}
            for e in ticket.events.all()
        ],
    }


def _mail_data(message: MailMessage) -> dict[str, Any]:
    return {
        "direction": message.direction,
        "from": message.from_email,
        "from_name": message.from_name,
        "to": message.to,
        "subject": message.subject,
        "sent_at": iso(message.sent_at),
        "text": message.text,
        "attachments": [a.filename for a in message.attachments.all()],
    }


def _conversation_data(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "started_at": conversation.created_at.isoformat(),
        "messages": [
            {
                "at": m.created_at.isoformat(),
                "from": m.role,
                "text": m.text,
                "feedback": [{"value": f.value, "comment": f.comment} for f in m.feedback.all()],
            }
            for m in conversation.messages.all()
        ],
    }


# --- Erasure -------------------------------------------------------------------------------------


def erase_person(email: str, *, actor: Any) -> dict[str, int]:
    """Delete everything of the person (see the module docstring); returns counts per kind.
    Idempotent: an address with nothing stored gives zero counts. The database and the vector
    index change in one transaction (an index write that fails rolls the rows back); files on
    disk go after the commit."""
    email = normalise_email(email)
    with transaction.atomic():
        inbound = _inbound_mail(email)
        messages = _mail_messages(email)
        tickets = _tickets(email)
        attachments = list(Attachment.objects.filter(message__in=messages).values_list("pk", "path"))
        counts = {
            "tickets": tickets.count(),
            "mail_messages": messages.count(),
            "attachments": len(attachments),
            "drafts": Draft.objects.filter(ticket__in=tickets).count(),
            "ticket_events": TicketEvent.objects.filter(ticket__in=tickets).count(),
            "raw_mail": len(inbound),
        }
        # Approved replies are PROTECTed by their outbound mail: the mail goes first.
        counts["outbound_mail"] = OutboundMail.objects.filter(ticket__in=tickets).delete()[0]
        counts["training_examples"] = _delete(_training_examples(email))
        _delete(messages)
        _delete(tickets)
        _delete(InboundMail.objects.filter(pk__in=[m.pk for m in inbound]))
        conversations = _conversations(email)
        counts["messages"] = Message.objects.filter(conversation__in=conversations).count()
        counts["conversations"] = _delete(conversations)
        counts["chunks"] = _remove_chunks(email)
        counts["scrubbed"] = sum(_scrub(model, fields, email) for model, fields in _COPIES)
        files = [m.path for m in inbound] + [path for _, path in attachments]
    counts["files"] = remove_stored_files(files)
    record_audit(actor, "person.erased", target_type="person", target_id=subject_hash(email), counts=counts)
    log.info(
        "event=person_erased subject=%s %s",
        subject_hash(email),
        " ".join(f"{k}={v}" for k, v in counts.items()),
    )
    return counts


def _delete(queryset: models.QuerySet) -> int:
    """Rows of the queryset's own model deleted (cascaded rows are counted by the caller)."""
    return queryset.delete()[1].get(queryset.model._meta.label, 0)


def _remove_chunks(email: str) -> int:
    """Chunks that mention the address leave the database and the FAISS index; BM25 rebuilds
    itself from the database (its collection stamp changes with the chunk ids). The rest of the
    document stays searchable: a document entirely about the person has their data in every
    chunk, so deleting the chunks that name them is enough. Re-ingesting the unchanged file
    does not bring them back (its content hash is unchanged, so it is not re-chunked). The
    source itself (a file ingested in place, or an upload's stored original under media/) is
    the knowledge manager's document and is left as it is."""
    by_index: dict[tuple[str, int], list[int]] = {}
    for chunk_id, collection, embedding in _chunks(email).values_list(
        "id", "document__collection", "embedding"
    ):
        dim = len(bytes(embedding)) // 4 if embedding else 0
        by_index.setdefault((collection, dim), []).append(chunk_id)
    removed = Chunk.objects.filter(pk__in=[i for ids in by_index.values() for i in ids]).delete()[0]
    for (collection, dim), ids in by_index.items():
        if dim:  # a chunk without a vector was never in the index
            get_index(collection, dim).replace(ids, [], np.zeros((0, dim), dtype=np.float32))
    return removed


def _scrub(model: type[models.Model], fields: tuple[str, ...], email: str) -> int:
    """Replace the address in other people's records; returns how many rows changed."""
    query = Q()
    for field in fields:
        query |= Q(**{f"{field}__icontains": email})
    changed = 0
    for row in model.objects.filter(query).only("pk", *fields):
        for field in fields:
            setattr(row, field, _without(getattr(row, field), email))
        row.save(update_fields=list(fields))
        changed += 1
    return changed


def _without(value: Any, email: str) -> Any:
    if isinstance(value, str):
        return re.sub(re.escape(email), ERASED, value, flags=re.IGNORECASE)
    if isinstance(value, list):
        return [_without(v, email) for v in value]
    if isinstance(value, dict):
        return {k: _without(v, email) for k, v in value.items()}
    return value

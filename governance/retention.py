"""Retention purges: personal data is kept no longer than the governance settings say
(GDPR art. 5(1)(e)). One class of data per period of GovernanceSettings:

- messages: chat conversations not updated within the period, with their messages and feedback
  (assistant/chat/privacy.py's `purge_expired`);
- emails: tickets in a final state (sent, rejected, no reply, failed) with no activity within the
  period: their mail, the raw inbound mail and attachment files on disk, drafts, outbound rows,
  events and the training examples taken from them (all cascade from the ticket); plus raw
  inbound mail that never became part of a ticket (unparseable, duplicates);
- embeddings: the question vectors kept for drift detection (assistant/insights/drift.py's
  `purge_samples(cutoff)`, when that module is installed);
- model_logs: the prompts stored with drafts (`Draft.prompt`: what the model saw, which quotes the
  customer) are emptied; the draft and its provenance stay.

`purge_expired` runs daily (governance/tasks.py, beat) and from `manage.py purge_retention`. Each
real run writes one AuditEvent "retention.purged" with the counts and periods, nothing personal.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from assistant.chat import privacy
from assistant.desk.inbound import remove_stored_files
from assistant.insights import drift
from assistant.models import Attachment, Draft, InboundMail, MailMessage, OutboundMail, Ticket, TicketEvent
from assistant.models.training import TrainingExample
from core.audit import record_audit
from core.models import GovernanceSettings

log = logging.getLogger(__name__)

# Statuses in which nothing more happens to a ticket unless the customer writes again (which
# reopens it and so updates it).
FINAL_TICKET_STATUSES = (
    Ticket.Status.SENT,
    Ticket.Status.REJECTED,
    Ticket.Status.NO_REPLY,
    Ticket.Status.FAILED,
)
# Tickets are deleted in batches, each in its own transaction: a long purge never holds one
# huge transaction (SQLite locks the whole database while writing).
BATCH = 500


def purge_expired(
    now: datetime | None = None, *, dry_run: bool = False, actor: Any = "system"
) -> dict[str, int]:
    """Delete (or with `dry_run`, only count) what is past its retention period. Returns counts:
    `messages` (conversations), `emails` (tickets) with `emails_mail`, `emails_raw_mail`,
    `emails_drafts`, `emails_outbound`, `emails_files` and `emails_training_examples`,
    `embeddings` (question vectors) and `model_logs` (draft prompts emptied)."""
    now = now or timezone.now()
    periods = GovernanceSettings.load()

    def cutoff(days: int) -> datetime:
        return now - timedelta(days=days)

    counts: dict[str, int] = {"messages": privacy.purge_expired(now, dry_run=dry_run)}
    emails, tickets = _purge_emails(cutoff(periods.retention_emails_days), dry_run=dry_run)
    counts |= emails
    counts["embeddings"] = _purge_embeddings(cutoff(periods.retention_embeddings_days), dry_run=dry_run)
    counts["model_logs"] = _purge_model_logs(
        cutoff(periods.retention_model_logs_days), dry_run=dry_run, gone=tickets if dry_run else []
    )
    log.info("event=retention_purged dry_run=%s %s", dry_run, " ".join(f"{k}={v}" for k, v in counts.items()))
    if not dry_run:  # a dry run changes nothing, the audit log included
        record_audit(
            actor,
            "retention.purged",
            target_type="governance",
            counts=counts,
            periods_days={
                "messages": periods.retention_messages_days,
                "emails": periods.retention_emails_days,
                "embeddings": periods.retention_embeddings_days,
                "model_logs": periods.retention_model_logs_days,
            },
            now=now.isoformat(),
        )
    return counts


def expired_tickets(cutoff: datetime):
    """Final tickets with nothing on them since `cutoff`: not updated, no mail, event, draft or
    send attempt (a late bounce or a slow sender still counts as activity)."""

    def since(model, *fields: str):
        recent = Q()
        for field in fields:
            recent |= Q(**{f"{field}__gte": cutoff})
        return Exists(model.objects.filter(recent, ticket=OuterRef("pk")))

    return (
        Ticket.objects.filter(status__in=FINAL_TICKET_STATUSES, updated_at__lt=cutoff)
        .exclude(since(MailMessage, "created_at"))
        .exclude(since(TicketEvent, "created_at"))
        .exclude(since(Draft, "created_at"))
        .exclude(since(OutboundMail, "created_at", "sent_at", "next_attempt_at"))
    )


def _purge_emails(cutoff: datetime, *, dry_run: bool) -> tuple[dict[str, int], list[int]]:
    """Returns the counts and the tickets purged (with `dry_run`: that would be)."""
    counts = dict.fromkeys(
        (
            "emails",
            "emails_mail",
            "emails_raw_mail",
            "emails_drafts",
            "emails_outbound",
            "emails_training_examples",
        ),
        0,
    )
    files: set[str] = set()
    ticket_ids = list(expired_tickets(cutoff).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ticket_ids), BATCH):
        batch = ticket_ids[start : start + BATCH]
        inbound_ids = set(
            MailMessage.objects.filter(ticket_id__in=batch, inbound__isnull=False).values_list(
                "inbound_id", flat=True
            )
        )
        files |= _files_to_remove(inbound_ids, Attachment.objects.filter(message__ticket_id__in=batch))
        with transaction.atomic():
            counts["emails"] += len(batch)
            counts["emails_mail"] += MailMessage.objects.filter(ticket_id__in=batch).count()
            counts["emails_raw_mail"] += len(inbound_ids)
            counts["emails_drafts"] += Draft.objects.filter(ticket_id__in=batch).count()
            outbound = OutboundMail.objects.filter(ticket_id__in=batch)
            counts["emails_outbound"] += outbound.count()
            counts["emails_training_examples"] += TrainingExample.objects.filter(ticket_id__in=batch).count()
            if not dry_run:
                outbound.delete()  # first: it PROTECTs the drafts it sends
                Ticket.objects.filter(pk__in=batch).delete()  # mail, attachments, drafts, events cascade
                InboundMail.objects.filter(pk__in=inbound_ids).delete()
    # Raw mail that never became part of a ticket: unparseable, or a duplicate delivery.
    loose = InboundMail.objects.filter(received_at__lt=cutoff, mailmessage__isnull=True)
    loose_ids = set(loose.values_list("pk", flat=True))
    files |= _files_to_remove(loose_ids, Attachment.objects.none())
    counts["emails_raw_mail"] += len(loose_ids)
    if not dry_run:
        with transaction.atomic():
            InboundMail.objects.filter(pk__in=loose_ids).delete()
            # Files go only once the rows that name them are gone for good.
            transaction.on_commit(lambda: remove_stored_files(files))
    counts["emails_files"] = len(files)
    return counts, ticket_ids


def _files_to_remove(inbound_ids: set[int], attachments) -> set[str]:
    """Stored files named only by these rows. Files are shared by content (named by their
    SHA-256): one that another, kept row also names stays."""
    raw = set(InboundMail.objects.filter(pk__in=inbound_ids).values_list("path", flat=True))
    attached = set(attachments.exclude(path="").values_list("path", flat=True))
    attachment_ids = set(attachments.values_list("pk", flat=True))
    kept = set(
        InboundMail.objects.filter(path__in=raw).exclude(pk__in=inbound_ids).values_list("path", flat=True)
    ) | set(
        Attachment.objects.filter(path__in=attached)
        .exclude(pk__in=attachment_ids)
        .values_list("path", flat=True)
    )
    return {p for p in (raw | attached) - kept if p}


def _purge_embeddings(cutoff: datetime, *, dry_run: bool) -> int:
    """Question vectors kept for drift detection (assistant/insights/drift.py)."""
    if dry_run:
        return drift.count_samples(cutoff)
    return drift.purge_samples(cutoff)


def _purge_model_logs(cutoff: datetime, *, dry_run: bool, gone: list[int]) -> int:
    """Empty the prompts stored with drafts older than `cutoff`. Content items keep no prompts
    (only their template version and retrieved chunks), so drafts are the only stored prompts.
    `gone`: tickets the email purge deleted (a dry run leaves them, but does not count them twice)."""
    stored = Draft.objects.filter(created_at__lt=cutoff).exclude(prompt=[]).exclude(ticket_id__in=gone)
    if dry_run:
        return stored.count()
    return stored.update(prompt=[])

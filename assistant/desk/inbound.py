"""Inbound mail into tickets. `receive_raw` is the one way in (SMTP listener, IMAP poller, HTTP
webhook): it stores the raw bytes and an InboundMail row first, in their own transaction, and only
then parses and threads, so a parser bug or a crash loses nothing (the row stays "received" or
"failed" and can be processed again).

Threading, in order: our Message-IDs or the customer's earlier ones named in In-Reply-To or
References; then our ticket reference in the subject ([#PT-XXXXXX]); then the same normalised
subject from the same sender on a ticket updated within THREAD_SUBJECT_DAYS. A mail
from a different sender never joins by subject, so two customers replying to the same newsletter
stay apart.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import can_proceed

from assistant.desk.parse import ParsedMail, parse
from assistant.desk.review import move
from assistant.models import Attachment, InboundMail, MailMessage, Ticket

log = logging.getLogger(__name__)

THREAD_SUBJECT_DAYS = 30
_REFERENCE = re.compile(r"\[#(PT-[A-Z0-9]{6})\]")
_PREFIXES = re.compile(r"^\s*((re|fw|fwd|aw|wg|tr|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def normalise_subject(subject: str) -> str:
    subject = _REFERENCE.sub("", subject)
    return " ".join(_PREFIXES.sub("", subject).lower().split())


def mail_dir() -> Path:
    return Path(settings.DATA_DIR) / "mail"


def remove_stored_files(paths: Iterable[str]) -> int:
    """Delete stored mail files (raw mail and attachments, paths relative to mail_dir) that no
    InboundMail or Attachment row names any more; returns how many were removed. Files are
    stored once per content, so another customer's identical attachment keeps the file. Call it
    once the rows are gone (after commit); a path that would leave the mail folder is skipped."""
    names = {p for p in paths if p}
    still_used = set(InboundMail.objects.filter(path__in=names).values_list("path", flat=True)) | set(
        Attachment.objects.filter(path__in=names).values_list("path", flat=True)
    )
    root = mail_dir().resolve()
    removed = 0
    for name in names - still_used:
        target = (root / name).resolve()
        if root not in target.parents:  # a path from the database never leaves the mail folder
            log.warning("event=stored_file_skipped reason=outside_mail_dir")
            continue
        try:
            target.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def receive_raw(raw: bytes, *, source: str, envelope_from: str = "") -> InboundMail:
    """Store first, then process. Returns the InboundMail (status tells what happened)."""
    digest = hashlib.sha256(raw).hexdigest()
    relative = Path("raw") / digest[:2] / f"{digest}.eml"
    target = mail_dir() / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".part")
        temporary.write_bytes(raw)
        temporary.replace(target)  # atomic: never a half-written file under the final name
    inbound = InboundMail.objects.create(
        source=source, sha256=digest, size=len(raw), path=str(relative), envelope_from=envelope_from[:320]
    )
    process(inbound, raw)
    return inbound


def process(inbound: InboundMail, raw: bytes | None = None) -> InboundMail:
    raw = raw if raw is not None else (mail_dir() / inbound.path).read_bytes()
    try:
        parsed = parse(raw)
    except Exception as exc:  # noqa: BLE001 - stored raw already; agents see the error
        log.warning("event=mail_unparseable inbound=%s error=%s", inbound.pk, type(exc).__name__)
        inbound.status, inbound.error = InboundMail.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        inbound.save(update_fields=["status", "error"])
        return inbound
    if not parsed.message_id:  # some clients omit it: a stable one from the content
        parsed.message_id = f"<{inbound.sha256}@parley.invalid>"
    try:
        with transaction.atomic():
            if MailMessage.objects.filter(message_id=parsed.message_id, direction="in").exists():
                inbound.status = InboundMail.Status.DUPLICATE
            else:
                _store_message(inbound, parsed)
                inbound.status = InboundMail.Status.PROCESSED
            inbound.save(update_fields=["status"])
    except IntegrityError:  # the same Message-ID won a race in another delivery
        inbound.status = InboundMail.Status.DUPLICATE
        inbound.save(update_fields=["status"])
    return inbound


def _store_message(inbound: InboundMail, parsed: ParsedMail) -> MailMessage:
    ticket = find_ticket(parsed)
    if ticket is None:
        ticket = Ticket.objects.create(
            subject=normalise_subject(parsed.subject)[:500] or "(no subject)",
            customer_email=parsed.from_email or "unknown@invalid",
            customer_name=parsed.from_name,
        )
    message = MailMessage.objects.create(
        ticket=ticket,
        inbound=inbound,
        direction=MailMessage.Direction.IN,
        message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references),
        from_email=parsed.from_email,
        from_name=parsed.from_name,
        to=", ".join(parsed.to)[:5000],
        subject=parsed.subject,
        sent_at=parsed.date if parsed.date and parsed.date.tzinfo else None,
        text=parsed.text,
        reply_text=parsed.reply_text,
        automated=parsed.automated,
        defects=", ".join(parsed.defects)[:5000],
    )
    for attachment in parsed.attachments:
        _store_attachment(message, attachment)
    Ticket.objects.filter(pk=ticket.pk).update(updated_at=timezone.now())
    if parsed.automated:
        if ticket.status == Ticket.Status.NEW and not ticket.messages.filter(automated="").exists():
            move(
                ticket,
                "nothing_to_answer",
                reason=f"Automated mail ({parsed.automated}): no reply is written.",
            )
    else:
        if ticket.status != Ticket.Status.NEW and can_proceed(ticket.reopen):
            move(ticket, "reopen", reason="The customer wrote again.")
        if ticket.status == Ticket.Status.NEW:  # (a reply being sent right now: see record_sent)
            ticket_id = ticket.pk
            transaction.on_commit(lambda: enqueue_processing(ticket_id))
    return message


def enqueue_processing(ticket_id: int) -> None:
    """Triage and a draft, by the Celery worker (`manage.py serve` runs one)."""
    from assistant.tasks import desk_process_ticket

    try:
        desk_process_ticket.delay(ticket_id)
    except Exception:  # noqa: BLE001 - the mail is stored; the sweeper picks the ticket up later
        log.exception("event=enqueue_failed ticket=%s", ticket_id)


def _store_attachment(message: MailMessage, attachment) -> None:
    size = len(attachment.payload)
    if size > settings.MAIL_MAX_ATTACHMENT_BYTES:
        Attachment.objects.create(
            message=message,
            filename=attachment.filename,
            content_type=attachment.content_type[:255],
            size=size,
            skipped=f"over {settings.MAIL_MAX_ATTACHMENT_BYTES} bytes",
        )
        return
    digest = hashlib.sha256(attachment.payload).hexdigest()
    relative = Path("attachments") / digest[:2] / digest
    target = mail_dir() / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(attachment.payload)
    Attachment.objects.create(
        message=message,
        filename=attachment.filename,
        content_type=attachment.content_type[:255],
        size=size,
        path=str(relative),
    )


def find_ticket(parsed: ParsedMail) -> Ticket | None:
    ids = [i for i in [parsed.in_reply_to, *parsed.references] if i]
    if ids:
        known = (
            MailMessage.objects.filter(message_id__in=ids).select_related("ticket").order_by("-id").first()
        )
        if known is not None:
            return known.ticket
    match = _REFERENCE.search(parsed.subject)
    if match:
        ticket = Ticket.objects.filter(reference=match.group(1)).first()
        # The reference only counts from the ticket's own customer: a forwarded reference must
        # not let a stranger write into someone else's thread.
        if ticket is not None and ticket.customer_email == parsed.from_email:
            return ticket
    subject = normalise_subject(parsed.subject)
    if subject and parsed.from_email:
        since = timezone.now() - timedelta(days=THREAD_SUBJECT_DAYS)
        return (
            Ticket.objects.filter(customer_email=parsed.from_email, subject=subject, updated_at__gte=since)
            .order_by("-updated_at")
            .first()
        )
    return None

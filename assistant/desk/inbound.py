"""Inbound mail into tickets. `store_raw` is the one way in (SMTP listener, IMAP poller, HTTP
webhook): it stores the raw bytes and an InboundMail row, in their own transaction, and queues
the rest for the Celery worker; nothing of an untrusted mail is parsed in the web process, so no
mail can stall chat, the console or the API. The worker's `process` parses it in a child process
with a time limit (parse.parse_isolated) and files it into a ticket; any failure, a mail too slow
to parse or one the database refuses, marks that mail failed with the error (agents see it in the
desk's "unreadable mail") and the next one flows. The sweep (`sweep_received`) queues again mail
whose task was lost and gives up, visibly, after DESK_PROCESS_ATTEMPTS.

Threading, in order, and only ever into a ticket of the mail's own sender (whoever knows a
Message-ID or a reference must not be able to write into another customer's thread): our
Message-IDs or the customer's earlier ones named in In-Reply-To or References; then our ticket
reference in the subject ([#PT-XXXXXX]); then the same normalised subject on a ticket updated
within THREAD_SUBJECT_DAYS. Mail without a sender address always opens a ticket of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_fsm import can_proceed

from assistant.desk.parse import ParsedAttachment, ParsedMail, ParseFailed, parse_isolated, sniff_headers
from assistant.desk.tickets import move
from assistant.models import Attachment, InboundMail, MailMessage, Ticket
from core.jobs import enqueue

log = logging.getLogger(__name__)

THREAD_SUBJECT_DAYS = 30
NO_SENDER = "unknown@invalid"  # the customer of a ticket opened by mail without a From address
SWEEP_BATCH = 200  # mail queued again per sweep (beat runs it every 30 s)
_REFERENCE = re.compile(r"\[#(PT-[A-Z0-9]{6})\]")
_PREFIXES = re.compile(r"^\s*((re|fw|fwd|aw|wg|tr|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def normalise_subject(subject: str) -> str:
    """The subject as the customer wrote it, without reply/forward prefixes, our reference and
    runs of white space: what the desk shows. Threads match it case-insensitively."""
    subject = _REFERENCE.sub("", subject)
    return " ".join(_PREFIXES.sub("", subject).split())


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


def store_raw(raw: bytes, *, source: str, envelope_from: str = "", queue: bool = True) -> InboundMail:
    """Store the bytes and an InboundMail row, and queue its processing once that commits. Cheap
    and parses nothing, so it is safe in the web process. The same bytes stored before (an IMAP
    re-fetch, a sender's retry) are a duplicate at once."""
    digest = hashlib.sha256(raw).hexdigest()
    relative = Path("raw") / digest[:2] / f"{digest}.eml"
    target = mail_dir() / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".part")
        temporary.write_bytes(raw)
        temporary.replace(target)  # atomic: never a half-written file under the final name
    seen = InboundMail.objects.filter(sha256=digest).exists()
    inbound = InboundMail.objects.create(
        source=source,
        sha256=digest,
        size=len(raw),
        path=str(relative),
        envelope_from=_clean(envelope_from, InboundMail, "envelope_from"),
        status=InboundMail.Status.DUPLICATE if seen else InboundMail.Status.RECEIVED,
        attempted_at=timezone.now(),
    )
    if queue and not seen:
        transaction.on_commit(lambda: enqueue_inbound(inbound.pk))
    return inbound


def receive_raw(raw: bytes, *, source: str, envelope_from: str = "") -> InboundMail:
    """Store and process at once, in this process: for scripts and tests that want the ticket now.
    The ways in use `store_raw`, and the worker processes."""
    inbound = store_raw(raw, source=source, envelope_from=envelope_from, queue=False)
    return process(inbound)


def enqueue_inbound(inbound_id: int) -> None:
    try:
        enqueue("assistant.desk_process_inbound", inbound_id)
    except Exception:  # noqa: BLE001 - the mail is stored; the sweep queues it again
        log.exception("event=enqueue_failed inbound=%s", inbound_id)


def process_stored(inbound_id: int) -> str:
    """The worker's task: process one stored mail; returns its status after."""
    inbound = InboundMail.objects.filter(pk=inbound_id).first()
    return process(inbound).status if inbound is not None else "missing"


def process(inbound: InboundMail) -> InboundMail:
    """Parse a stored mail (in a child process, MAIL_PARSE_TIMEOUT) and file it into a ticket.
    Any failure marks this mail failed with the error and returns, so the next mail is never
    held up. Safe to run twice (a redelivered task, the sweep): only "received" mail is taken."""
    if inbound.status != InboundMail.Status.RECEIVED:
        return inbound
    InboundMail.objects.filter(pk=inbound.pk).update(attempts=F("attempts") + 1, attempted_at=timezone.now())
    inbound.refresh_from_db(fields=["attempts", "attempted_at"])
    if inbound.attempts > settings.DESK_PROCESS_ATTEMPTS:  # it took the worker down each time
        return _fail(inbound, "gave_up", f"Not processed after {settings.DESK_PROCESS_ATTEMPTS} attempts.")
    try:
        parsed = parse_isolated(mail_dir() / inbound.path, settings.MAIL_PARSE_TIMEOUT)
    except ParseFailed as exc:
        return _fail(inbound, "parse_failed", str(exc))
    except OSError as exc:  # no child process could be started (out of memory, say)
        return _fail(
            inbound, "parser_not_started", f"The parser could not start: {type(exc).__name__}: {exc}"
        )
    parsed = _sanitised(parsed)
    if not parsed.message_id:  # some clients omit it: a stable one from the content
        parsed.message_id = f"<{inbound.sha256}@parley.invalid>"
    try:
        with transaction.atomic():
            current = InboundMail.objects.select_for_update().get(pk=inbound.pk)
            if current.status != InboundMail.Status.RECEIVED:  # another delivery of the task won
                return current
            if MailMessage.objects.filter(message_id=parsed.message_id, direction="in").exists():
                inbound.status = InboundMail.Status.DUPLICATE
            else:
                _store_message(inbound, parsed)
                inbound.status = InboundMail.Status.PROCESSED
            inbound.save(update_fields=["status"])
    except IntegrityError as exc:
        if not MailMessage.objects.filter(message_id=parsed.message_id, direction="in").exists():
            return _fail(inbound, "store_failed", f"Could not be stored: {type(exc).__name__}: {exc}")
        inbound.status = InboundMail.Status.DUPLICATE  # the same Message-ID won a race elsewhere
        inbound.save(update_fields=["status"])
    except Exception as exc:  # noqa: BLE001 - one mail the database refuses must not block the rest
        return _fail(inbound, "store_failed", f"Could not be stored: {type(exc).__name__}: {exc}")
    return inbound


def _fail(inbound: InboundMail, code: str, error: str) -> InboundMail:
    """Mark the mail failed with the error, and keep its From and Subject as written (read with
    one bounded regex) so agents can tell whose mail it was."""
    log.warning("event=mail_failed inbound=%s reason=%s", inbound.pk, code)
    try:
        with open(mail_dir() / inbound.path, "rb") as handle:
            head = sniff_headers(handle.read(16 * 1024))
    except OSError:
        head = {}
    inbound.status, inbound.error = InboundMail.Status.FAILED, error[:2000]
    inbound.from_header = _clean(head.get("from", ""), InboundMail, "from_header")
    inbound.subject_header = _clean(head.get("subject", ""), InboundMail, "subject_header")
    inbound.save(update_fields=["status", "error", "from_header", "subject_header"])
    return inbound


def sweep_received() -> dict[str, int]:
    """Mail stored DESK_STUCK_SECONDS ago and still not processed (its task was lost, or the
    worker died on it): queued again, and after DESK_PROCESS_ATTEMPTS marked failed, so it shows
    in the agents' unreadable mail instead of waiting unseen."""
    cutoff = timezone.now() - timedelta(seconds=settings.DESK_STUCK_SECONDS)
    stuck = InboundMail.objects.filter(status=InboundMail.Status.RECEIVED).filter(
        Q(attempted_at__lt=cutoff) | Q(attempted_at__isnull=True, received_at__lt=cutoff)
    )
    requeued = gave_up = 0
    for inbound in stuck.order_by("id")[:SWEEP_BATCH]:
        if inbound.attempts >= settings.DESK_PROCESS_ATTEMPTS:
            _fail(
                inbound, "gave_up", f"Not processed after {inbound.attempts} attempts; the raw mail is kept."
            )
            gave_up += 1
        elif InboundMail.objects.filter(pk=inbound.pk, attempts=inbound.attempts).update(
            attempts=F("attempts") + 1, attempted_at=timezone.now()
        ):
            enqueue_inbound(inbound.pk)
            requeued += 1
    return {"requeued_mail": requeued, "gave_up_mail": gave_up}


def _clean(value: str, model: type[models.Model], name: str) -> str:
    """Text the database takes: no NUL (PostgreSQL refuses it), no lone surrogates (from bytes
    that were not UTF-8), cut to the column's length (SQLite does not enforce it; PostgreSQL
    refuses the row)."""
    value = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    limit = model._meta.get_field(name).max_length
    return value[:limit] if limit else value


def _sanitised(parsed: ParsedMail) -> ParsedMail:
    """Every field of a parsed mail fit for its column, so no header can make storing it fail."""
    if len(parsed.from_email) > MailMessage._meta.get_field("from_email").max_length:
        parsed.defects.append("from address cut to its column")
    return dataclasses.replace(
        parsed,
        message_id=_clean(parsed.message_id, MailMessage, "message_id"),
        in_reply_to=_clean(parsed.in_reply_to, MailMessage, "in_reply_to"),
        references=[_clean(r, MailMessage, "message_id") for r in parsed.references],
        from_email=_clean(parsed.from_email, MailMessage, "from_email"),
        from_name=_clean(parsed.from_name, MailMessage, "from_name"),
        to=[_clean(t, MailMessage, "to") for t in parsed.to],
        subject=_clean(parsed.subject, MailMessage, "subject"),
        text=_clean(parsed.text, MailMessage, "text"),
        reply_text=_clean(parsed.reply_text, MailMessage, "reply_text"),
        automated=_clean(parsed.automated, MailMessage, "automated"),
        defects=[_clean(d, MailMessage, "defects") for d in parsed.defects],
        attachments=[
            ParsedAttachment(
                _clean(a.filename, Attachment, "filename"),
                _clean(a.content_type, Attachment, "content_type"),
                a.payload,
            )
            for a in parsed.attachments
        ],
    )


def _store_message(inbound: InboundMail, parsed: ParsedMail) -> MailMessage:
    ticket = find_ticket(parsed)
    if ticket is None:
        ticket = Ticket.objects.create(
            subject=normalise_subject(parsed.subject)[:500] or "(no subject)",
            customer_email=parsed.from_email or NO_SENDER,
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
        sent_at=parsed.date,
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


def open_chat_ticket(
    *, message_id: str, email: str, name: str, subject: str, text: str, question: str
) -> Ticket:
    """A ticket from a website chat whose visitor left their address because nobody was online
    (assistant/chat/offline.py). The chat is the customer's first message, as if they had mailed
    it (`text` the whole transcript, `question` what the visitor wrote: what triage and the draft
    answer), so the desk triages and drafts it like any mail. Always a new ticket: an address
    typed into a chat proves nothing, so it never threads into that address's other tickets.
    `message_id` names the chat; the same one again raises IntegrityError (one inbound message
    per Message-ID). Call inside a transaction: processing is queued when it commits."""
    ticket = Ticket.objects.create(
        subject=_clean(subject, Ticket, "subject") or "(no subject)",
        customer_email=email,
        customer_name=_clean(name, Ticket, "customer_name"),
    )
    MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id=message_id,
        from_email=email,
        from_name=_clean(name, MailMessage, "from_name"),
        subject=_clean(subject, MailMessage, "subject"),
        sent_at=timezone.now(),
        text=_clean(text, MailMessage, "text"),
        reply_text=_clean(question, MailMessage, "reply_text"),
    )
    ticket_id = ticket.pk
    transaction.on_commit(lambda: enqueue_processing(ticket_id))
    return ticket


def enqueue_processing(ticket_id: int) -> None:
    """Triage and a draft, by the Celery worker (`manage.py serve` runs one)."""
    try:
        enqueue("assistant.desk_process_ticket", ticket_id)
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
    """The sender's own ticket this mail continues, or None for a new one (see the module's
    docstring for the order)."""
    sender = parsed.from_email
    if not sender or sender == NO_SENDER:  # no one to check the thread belongs to
        return None
    ids = [i for i in [parsed.in_reply_to, *parsed.references] if i]
    if ids:
        # Only a thread of this sender: a Message-ID is no secret (it is in every quote and
        # forward), so naming it must not let a stranger write into someone else's ticket.
        known = (
            MailMessage.objects.filter(message_id__in=ids, ticket__customer_email=sender)
            .select_related("ticket")
            .order_by("-id")
            .first()
        )
        if known is not None:
            return known.ticket
    match = _REFERENCE.search(parsed.subject)
    if match:
        ticket = Ticket.objects.filter(reference=match.group(1)).first()
        # The reference only counts from the ticket's own customer: a forwarded reference must
        # not let a stranger write into someone else's thread.
        if ticket is not None and ticket.customer_email == sender:
            return ticket
    subject = normalise_subject(parsed.subject)
    if subject:
        since = timezone.now() - timedelta(days=THREAD_SUBJECT_DAYS)
        return (
            Ticket.objects.filter(customer_email=sender, subject__iexact=subject, updated_at__gte=since)
            .order_by("-updated_at")
            .first()
        )
    return None

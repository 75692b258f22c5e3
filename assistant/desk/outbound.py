"""Approved replies out through Django's email backend (SMTP), exactly once.

- An OutboundMail row is created with the approval (one per approved draft: a constraint), with
  its Message-ID fixed then, so every attempt sends the same message.
- Each attempt first claims the row with a conditional UPDATE (pending/retry -> sending): a
  redelivered Celery task, the sweeper and a second worker cannot all send it.
- A refused or unreachable server raises before the server accepts the message: the row goes
  back to "retry" with a doubling delay, and to "failed" (ticket too) after DESK_SEND_ATTEMPTS,
  with the text kept for an agent to send again.
- A worker that dies mid-attempt leaves the row "sending". The sweeper marks it "unconfirmed"
  after DESK_SEND_STALE_SECONDS and never sends it on its own: the server may have accepted it.
  An agent looks and approves again (the same Message-ID) if it did not arrive.
"""

from __future__ import annotations

import logging
import re
import smtplib
from datetime import timedelta
from email.utils import formataddr, make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.html import escape, linebreaks

from assistant.desk.tickets import ReviewError, move
from assistant.models import Draft, MailMessage, OutboundMail, Ticket
from core.jobs import enqueue as enqueue_job
from retrieval.models import Chunk, Document

log = logging.getLogger(__name__)


def reply_subject(ticket: Ticket, original: str) -> str:
    subject = original.strip() or ticket.subject
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    if f"[#{ticket.reference}]" not in subject:
        subject = f"{subject} [#{ticket.reference}]"
    return subject[:500]


def _sources_footer(draft: Draft) -> list[tuple[int, str, str]]:
    """The sources the reply cites by number ([1]), so the customer can look them up: number,
    title and web address (empty where the document has none). Only public documents: a source
    whose document is private now (or gone, so that nobody can tell) is left out, title and
    address, whatever the draft recorded when it was written."""
    cited = {int(n) for n in re.findall(r"\[(\d{1,2})\]", draft.body)}
    public = _public_sources(draft)
    return [
        (c["n"], c["title"], c["url"] if str(c.get("url", "")).startswith(("https://", "http://")) else "")
        for c in draft.citations
        if c.get("n") in cited and c.get("n") in public
    ]


_KB_PAGE = re.compile(r"/kb/(\d+)/")


def _public_sources(draft: Draft) -> set[int]:
    """The citation numbers whose documents are all public now. A source is found by the chunks
    the draft retrieved for it, else (chunks replaced by a re-ingestion) by its address: our
    own /kb/<id>/ page, or the web address its documents were ingested from."""
    documents: dict[int, set[int]] = {}  # citation number -> document ids
    numbered = [r for r in draft.retrieved if isinstance(r, dict) and "source" in r]
    chunk_documents = dict(
        Chunk.objects.filter(pk__in=[r["chunk"] for r in numbered]).values_list("pk", "document_id")
    )
    for r in numbered:
        if r["chunk"] in chunk_documents:
            documents.setdefault(r["source"], set()).add(chunk_documents[r["chunk"]])
    for citation in draft.citations:
        n, url = citation.get("n"), str(citation.get("url", ""))
        if n in documents or not url:
            continue
        if page := _KB_PAGE.match(url):
            documents[n] = {int(page.group(1))}
        elif url.startswith(("https://", "http://")):
            documents[n] = set(Document.objects.filter(url=url).values_list("pk", flat=True))
    ids = set().union(*documents.values())
    public = set(Document.objects.filter(pk__in=ids, public=True).values_list("pk", flat=True))
    return {n for n, found in documents.items() if found and found <= public}


def render(draft: Draft) -> tuple[str, str]:
    """The plain-text and HTML bodies. The HTML is the text escaped, in paragraphs: nothing the
    model or an agent typed becomes markup."""
    body = draft.body.strip()
    footer = _sources_footer(draft)
    text, html = body, linebreaks(escape(body))
    if footer:
        text += "\n\nSources:\n" + "\n".join(
            f"[{n}] {title}" + (f": {url}" if url else "") for n, title, url in footer
        )
        items = "".join(
            f"<li>[{n}] "
            + (f'<a href="{escape(url)}">{escape(title)}</a>' if url else escape(title))
            + "</li>"
            for n, title, url in footer
        )
        html += f"<p>Sources:</p><ul>{items}</ul>"
    return text, f"<!doctype html><html><body>{html}</body></html>"


def prepare(ticket: Ticket, draft: Draft, user) -> OutboundMail:
    parent = draft.replying_to or ticket.messages.filter(direction=MailMessage.Direction.IN).last()
    references = []
    if parent is not None:
        references = [r for r in parent.references.split() if r] + [parent.message_id]
    domain = settings.DESK_FROM_EMAIL.rpartition("@")[2] or "parley.invalid"
    text, html = render(draft)
    return OutboundMail.objects.create(
        ticket=ticket,
        draft=draft,
        message_id=make_msgid(domain=domain),
        from_email=settings.DESK_FROM_EMAIL,
        to=formataddr((ticket.customer_name, ticket.customer_email)),
        subject=reply_subject(ticket, parent.subject if parent else ""),
        in_reply_to=parent.message_id if parent else "",
        references=" ".join(references[-20:]),  # the chain's tail is enough to thread
        text=text,
        html=html,
        approved_by=user,
    )


def retry_by_hand(mail: OutboundMail) -> OutboundMail:
    """An agent approves a failed or unconfirmed reply again: the same message, fresh attempts."""
    OutboundMail.objects.filter(pk=mail.pk).update(
        status=OutboundMail.Status.RETRY, attempts=0, next_attempt_at=timezone.now(), last_error=""
    )
    mail.refresh_from_db()
    return mail


def enqueue(pk: int, countdown: float = 0) -> None:
    enqueue_job("assistant.desk_send_reply", pk, countdown=countdown)


def claim(pk: int) -> OutboundMail | None:
    """Take the row for one attempt, or None when it is not due or someone else has it."""
    now = timezone.now()
    taken = OutboundMail.objects.filter(
        pk=pk, status__in=[OutboundMail.Status.PENDING, OutboundMail.Status.RETRY], next_attempt_at__lte=now
    ).update(status=OutboundMail.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    return OutboundMail.objects.select_related("ticket").get(pk=pk) if taken else None


def build_message(mail: OutboundMail, connection=None) -> EmailMultiAlternatives:
    headers = {
        "Message-ID": mail.message_id,
        "X-Parley-Desk": mail.ticket.reference,  # our own mail, if it ever comes back in
    }
    if mail.in_reply_to:
        headers["In-Reply-To"] = mail.in_reply_to
    if mail.references:
        headers["References"] = mail.references
    message = EmailMultiAlternatives(
        subject=mail.subject,
        body=mail.text,
        from_email=mail.from_email,
        to=[mail.to],
        headers=headers,
        connection=connection,
    )
    message.attach_alternative(mail.html, "text/html")
    return message


def deliver(pk: int) -> str:
    """One attempt to send reply `pk`. Returns the row's status after it."""
    mail = claim(pk)
    if mail is None:
        row = OutboundMail.objects.filter(pk=pk).values_list("status", flat=True).first()
        return row or "missing"
    connection = get_connection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT)
    try:
        connection.open()
        # send_messages raises for anything short of the server's 250 to DATA: nothing was
        # accepted when we get an exception here.
        connection.send_messages([build_message(mail, connection)])
    except (smtplib.SMTPException, OSError) as exc:
        return _attempt_failed(mail, exc)
    finally:
        try:
            connection.close()  # after acceptance a failing QUIT changes nothing
        except Exception:  # noqa: BLE001
            log.debug("event=smtp_close_failed outbound=%s", pk)
    record_sent(mail)
    return OutboundMail.Status.SENT


def record_sent(mail: OutboundMail) -> None:
    now = timezone.now()
    with transaction.atomic():
        OutboundMail.objects.filter(pk=mail.pk).update(
            status=OutboundMail.Status.SENT, sent_at=now, last_error=""
        )
        MailMessage.objects.create(
            ticket=mail.ticket,
            direction=MailMessage.Direction.OUT,
            message_id=mail.message_id,
            in_reply_to=mail.in_reply_to,
            references=mail.references,
            from_email=mail.from_email,
            to=mail.to,
            subject=mail.subject,
            sent_at=now,
            text=mail.draft.body,
            reply_text=mail.draft.body,
        )
        ticket = Ticket.objects.get(pk=mail.ticket_id)
        try:
            move(ticket, "sent", data={"outbound": mail.pk, "message_id": mail.message_id})
        except ReviewError:  # the customer wrote again meanwhile: the ticket is theirs to keep
            pass
    log.info("event=reply_sent ticket=%s outbound=%s attempts=%s", mail.ticket_id, mail.pk, mail.attempts)


def _attempt_failed(mail: OutboundMail, exc: Exception) -> str:
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if mail.attempts < settings.DESK_SEND_ATTEMPTS:
        delay = settings.DESK_SEND_BACKOFF_SECONDS * 2 ** (mail.attempts - 1)
        OutboundMail.objects.filter(pk=mail.pk).update(
            status=OutboundMail.Status.RETRY,
            last_error=error,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
        )
        log.warning(
            "event=reply_send_retry outbound=%s attempt=%s delay=%s error=%s",
            mail.pk,
            mail.attempts,
            delay,
            error,
        )
        transaction.on_commit(lambda: enqueue(mail.pk, countdown=delay))
        return OutboundMail.Status.RETRY
    with transaction.atomic():
        OutboundMail.objects.filter(pk=mail.pk).update(status=OutboundMail.Status.FAILED, last_error=error)
        try:
            move(
                Ticket.objects.get(pk=mail.ticket_id), "send_failed", reason=error, data={"outbound": mail.pk}
            )
        except ReviewError:
            pass
    log.error("event=reply_send_failed outbound=%s attempts=%s error=%s", mail.pk, mail.attempts, error)
    return OutboundMail.Status.FAILED


def sweep() -> dict[str, int]:
    """Due retries whose task was lost are sent; attempts cut off are marked unconfirmed."""
    now = timezone.now()
    stale = OutboundMail.objects.filter(
        status=OutboundMail.Status.SENDING,
        claimed_at__lt=now - timedelta(seconds=settings.DESK_SEND_STALE_SECONDS),
    )
    unconfirmed = 0
    for mail in stale:
        with transaction.atomic():
            if not OutboundMail.objects.filter(pk=mail.pk, status=OutboundMail.Status.SENDING).update(
                status=OutboundMail.Status.UNCONFIRMED,
                last_error="The attempt was cut off (worker stopped); the server may have accepted it. "
                "Check before sending again.",
            ):
                continue
            unconfirmed += 1
            try:
                move(
                    Ticket.objects.get(pk=mail.ticket_id),
                    "send_failed",
                    reason="Sending was cut off; it may or may not have gone out.",
                    data={"outbound": mail.pk, "unconfirmed": True},
                )
            except ReviewError:
                pass
    due = list(
        OutboundMail.objects.filter(
            status__in=[OutboundMail.Status.PENDING, OutboundMail.Status.RETRY], next_attempt_at__lte=now
        ).values_list("pk", flat=True)
    )
    for pk in due:
        deliver(pk)
    return {"unconfirmed": unconfirmed, "attempted": len(due)}

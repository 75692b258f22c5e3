"""The email service desk: every inbound mail is stored raw first, then parsed into a message of a
ticket (a thread with one customer). Raw files live under PARLEY_DATA_DIR/mail/, named by their
SHA-256, so a mail that arrives twice (IMAP re-poll, webhook retry) is stored once."""

from __future__ import annotations

import base64
import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.transitions import DecisionRecord
from inference.models import ModelVersion


def new_reference() -> str:
    """Short, unguessable, unambiguous: what we put in reply subjects as [#PT-XXXXXX]."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "PT-" + "".join(secrets.choice(alphabet) for _ in range(6))


class InboundMail(models.Model):
    """A mail as it arrived, before any parsing: nothing that came in is ever lost."""

    class Source(models.TextChoices):
        SMTP = "smtp"
        IMAP = "imap"
        HTTP = "http"

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"  # a message of a ticket
        DUPLICATE = "duplicate"  # the same Message-ID was processed before
        FAILED = "failed"  # stored raw, could not be parsed or stored: agents see it with the error

    source = models.CharField(max_length=8, choices=Source.choices)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()
    path = models.CharField(max_length=300)  # relative to PARLEY_DATA_DIR
    envelope_from = models.CharField(max_length=320, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    # Processing runs or queued again by the sweep, and when last: a mail still "received" after
    # DESK_PROCESS_ATTEMPTS is marked failed rather than retried forever.
    attempts = models.PositiveSmallIntegerField(default=0)
    attempted_at = models.DateTimeField(null=True, blank=True)
    # From and Subject as written, kept when it failed, so agents can tell whose mail it was.
    from_header = models.CharField(max_length=300, blank=True)
    subject_header = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["status", "attempted_at"], name="inboundmail_status_attempted")]

    def __str__(self) -> str:
        return f"{self.source} mail {self.sha256[:12]} ({self.status})"


class Ticket(ConcurrentTransitionMixin, models.Model):
    """A thread with one customer. Status is a state machine (django-fsm-2): every move goes
    through a transition, is checked against the status it was read with (two agents approving
    at once: one wins, the other gets a conflict) and is recorded as a TicketEvent by
    `assistant.desk.tickets.move`."""

    class Status(models.TextChoices):
        NEW = "new"  # waiting for triage and a draft
        NEEDS_REVIEW = "needs_review"  # a draft waits for an agent
        SENDING = "sending"  # approved; the reply is being sent
        SENT = "sent"
        REJECTED = "rejected"  # an agent decided not to reply (with a reason)
        FAILED = "failed"  # the reply could not be sent after every retry (nothing lost)
        NO_REPLY = "no_reply"  # only automated mail (auto-replies, bounces, bulk): nothing to answer

    reference = models.CharField(max_length=12, unique=True, default=new_reference, editable=False)
    subject = models.CharField(max_length=500)
    customer_email = models.EmailField(max_length=320, db_index=True)
    customer_name = models.CharField(max_length=200, blank=True)
    status = FSMField(max_length=16, choices=Status.choices, default=Status.NEW, protected=False)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    # Triage: the label, how sure the method was (0..1) and why (scores, nearest examples).
    category = models.CharField(max_length=64, blank=True)
    category_confidence = models.FloatField(null=True, blank=True)
    priority = models.CharField(max_length=16, blank=True)
    priority_confidence = models.FloatField(null=True, blank=True)
    language = models.CharField(max_length=8, blank=True)
    language_confidence = models.FloatField(null=True, blank=True)
    triage = models.JSONField(default=dict, blank=True)
    triaged_at = models.DateTimeField(null=True, blank=True)
    # Times the sweep queued this ticket's triage and draft again while it sat in "new"; after
    # DESK_PROCESS_ATTEMPTS it goes to review with a flagged empty draft. Back to 0 once processed.
    process_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["status", "updated_at"], name="ticket_status_updated")]

    def __str__(self) -> str:
        return f"[#{self.reference}] {self.subject}"

    # Transitions. The customer writing again reopens any ticket that is not being sent.
    _REOPENABLE = [
        Status.NEW,
        Status.NEEDS_REVIEW,
        Status.SENT,
        Status.REJECTED,
        Status.FAILED,
        Status.NO_REPLY,
    ]

    @transition(field=status, source=_REOPENABLE, target=Status.NEW)
    def reopen(self) -> None:
        pass

    @transition(
        field=status, source=[Status.NEW, Status.NEEDS_REVIEW, Status.FAILED], target=Status.NEEDS_REVIEW
    )
    def draft_ready(self) -> None:
        pass

    @transition(field=status, source=[Status.NEW, Status.NEEDS_REVIEW], target=Status.NO_REPLY)
    def nothing_to_answer(self) -> None:
        pass

    @transition(field=status, source=[Status.NEEDS_REVIEW, Status.FAILED], target=Status.SENDING)
    def approve(self) -> None:
        pass

    @transition(field=status, source=[Status.NEW, Status.NEEDS_REVIEW, Status.FAILED], target=Status.REJECTED)
    def reject(self) -> None:
        pass

    @transition(field=status, source=Status.SENDING, target=Status.SENT)
    def sent(self) -> None:
        pass

    @transition(field=status, source=Status.SENDING, target=Status.FAILED)
    def send_failed(self) -> None:
        pass


class TicketEvent(DecisionRecord):
    """The record of a ticket's moves and decisions: who did what, when, and why."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)

    class Meta(DecisionRecord.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.ticket_id} {self.action}"


class MailMessage(models.Model):
    """One mail of a ticket's thread, inbound or sent by the desk."""

    class Direction(models.TextChoices):
        IN = "in"
        OUT = "out"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    inbound = models.OneToOneField(InboundMail, null=True, blank=True, on_delete=models.SET_NULL)
    direction = models.CharField(max_length=4, choices=Direction.choices)
    message_id = models.CharField(max_length=998, db_index=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)  # space-separated message ids
    from_email = models.CharField(max_length=320)
    from_name = models.CharField(max_length=200, blank=True)
    to = models.TextField(blank=True)
    subject = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)  # the Date header
    text = models.TextField(blank=True)  # the whole body as text (HTML reduced safely)
    reply_text = models.TextField(blank=True)  # the new part, quotes and signatures stripped
    # Why no draft will be written: auto-reply, bulk, bounce, our own mail (loop protection).
    automated = models.CharField(max_length=32, blank=True)
    defects = models.TextField(blank=True)  # what the parser had to work around
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [  # one inbound mail per Message-ID, even when two deliveries race
            models.UniqueConstraint(
                fields=["message_id"], condition=models.Q(direction="in"), name="one_inbound_per_message_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.message_id}"


class Attachment(models.Model):
    message = models.ForeignKey(MailMessage, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    path = models.CharField(max_length=300, blank=True)  # empty when not kept (over the size limit)
    skipped = models.CharField(max_length=64, blank=True)  # why it was not kept

    def __str__(self) -> str:
        return self.filename


class Draft(models.Model):
    """One version of the reply to a ticket: written by the model (author empty) or edited by an
    agent. Versions are never changed or deleted; an edit is a new version."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="drafts")
    version = models.PositiveIntegerField()
    body = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    replying_to = models.ForeignKey(MailMessage, null=True, blank=True, on_delete=models.SET_NULL)
    # Provenance of a generated draft (an edit copies its parent's, so sources stay visible).
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT)
    prompt_template = models.CharField(max_length=32, blank=True)
    prompt = models.JSONField(default=list, blank=True)  # the chat messages the model saw
    retrieved = models.JSONField(default=list, blank=True)  # [{chunk, score, source}]
    citations = models.JSONField(default=list, blank=True)  # [{n, title, url, section, snippet}]
    confidence = models.FloatField(null=True, blank=True)
    low_confidence = models.BooleanField(default=False)
    flags = models.JSONField(default=list, blank=True)  # why it is low-confidence, in words
    # Per sentence of the model's text: supported or not, by which source (answers/support.py).
    support = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["ticket", "version"]
        constraints = [models.UniqueConstraint(fields=["ticket", "version"], name="one_draft_per_version")]

    def __str__(self) -> str:
        return f"{self.ticket_id} v{self.version}"


class OutboundMail(models.Model):
    """An approved reply on its way out. One per approved draft (a constraint), claimed by a
    conditional UPDATE before every attempt, so two workers never both send it. A worker that
    dies after the SMTP server may have accepted the message leaves it "unconfirmed": it is
    never sent again on its own; an agent checks and decides."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"  # claimed by a worker, attempt in flight
        RETRY = "retry"  # the last attempt failed before the server accepted it
        SENT = "sent"
        FAILED = "failed"  # every attempt failed; nothing was sent
        UNCONFIRMED = "unconfirmed"  # an attempt was cut off: it may or may not have gone out

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="outbound")
    draft = models.OneToOneField(Draft, on_delete=models.PROTECT, related_name="outbound")
    message_id = models.CharField(max_length=998, unique=True)
    from_email = models.CharField(max_length=320)
    to = models.CharField(max_length=320)
    subject = models.CharField(max_length=500)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    text = models.TextField()
    html = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.message_id} ({self.status})"


class TriageLabel(models.Model):
    """A category or priority the desk triages into, with labelled example messages (one per
    line): a ticket gets the label whose examples' mean embedding is nearest to it. Editable in
    the admin; the desk re-reads them on the next triage."""

    class Kind(models.TextChoices):
        CATEGORY = "category"
        PRIORITY = "priority"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.SlugField(max_length=64)
    description = models.CharField(max_length=300, blank=True)
    examples = models.TextField(help_text="Example customer messages, one per line.")
    rank = models.PositiveSmallIntegerField(default=0, help_text="Queue order for priorities: 0 first.")
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "rank", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="one_label_per_kind_and_name")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.name}"

    def example_list(self) -> list[str]:
        return [line.strip() for line in self.examples.splitlines() if line.strip()]


def _fernet():
    from cryptography.fernet import Fernet

    key = hashlib.sha256(("parley-mailbox:" + settings.SECRET_KEY).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


class Mailbox(models.Model):
    """An IMAP mailbox the desk polls. It remembers the folder's UIDVALIDITY and the last UID it
    stored, so a restart neither misses nor duplicates mail. The password is stored encrypted
    with a key derived from SECRET_KEY (rotating SECRET_KEY means entering it again)."""

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=993)
    use_ssl = models.BooleanField(default=True)
    username = models.CharField(max_length=320)
    password_encrypted = models.TextField(blank=True, editable=False)
    folder = models.CharField(max_length=255, default="INBOX")
    enabled = models.BooleanField(default=True)
    uidvalidity = models.BigIntegerField(null=True, blank=True, editable=False)
    last_uid = models.BigIntegerField(default=0, editable=False)
    last_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.username}@{self.host})"

    def set_password(self, password: str) -> None:
        self.password_encrypted = _fernet().encrypt(password.encode()).decode() if password else ""

    def get_password(self) -> str:
        from cryptography.fernet import InvalidToken

        if not self.password_encrypted:
            return ""
        try:
            return _fernet().decrypt(self.password_encrypted.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("The mailbox password cannot be read (was SECRET_KEY changed?).") from exc

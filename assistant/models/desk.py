"""The email service desk: every inbound mail is stored raw first, then parsed into a message of a
ticket (a thread with one customer). Raw files live under PARLEY_DATA_DIR/mail/, named by their
SHA-256, so a mail that arrives twice (IMAP re-poll, webhook retry) is stored once."""

from __future__ import annotations

import secrets

from django.db import models


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
        FAILED = "failed"  # stored raw, could not be parsed: visible to agents with the error

    source = models.CharField(max_length=8, choices=Source.choices)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()
    path = models.CharField(max_length=300)  # relative to PARLEY_DATA_DIR
    envelope_from = models.CharField(max_length=320, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.source} mail {self.sha256[:12]} ({self.status})"


class Ticket(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        OPEN = "open"  # has a draft waiting for review
        ANSWERED = "answered"
        CLOSED = "closed"

    reference = models.CharField(max_length=12, unique=True, default=new_reference, editable=False)
    subject = models.CharField(max_length=500)
    customer_email = models.EmailField(max_length=320, db_index=True)
    customer_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    category = models.CharField(max_length=64, blank=True)
    priority = models.CharField(max_length=16, blank=True)
    language = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"[#{self.reference}] {self.subject}"


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

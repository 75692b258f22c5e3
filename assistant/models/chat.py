"""Conversations with website visitors. Every generated answer records what produced it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from assistant.models.hours import HoursError, parse_hours, zone
from inference.models import ModelVersion


def validate_hours(value: str) -> None:
    try:
        parse_hours(value)
    except HoursError as exc:
        raise ValidationError(str(exc)) from exc


def validate_time_zone(value: str) -> None:
    try:
        zone(value)
    except HoursError as exc:
        raise ValidationError(str(exc)) from exc


class Site(models.Model):
    """A company website that embeds the widget: the origins it may connect from, the knowledge
    base it answers from, and how the widget looks there (a page's data- attributes win)."""

    key = models.SlugField(max_length=64, unique=True, help_text="The widget's data-site value.")
    name = models.CharField(max_length=200)
    allowed_origins = models.TextField(
        blank=True, help_text="One origin per line, e.g. https://www.example.com (scheme, host, port)."
    )
    collection = models.SlugField(max_length=64, default="default")
    title = models.CharField(max_length=80, blank=True)
    greeting = models.CharField(max_length=300, blank=True)
    color = models.CharField(max_length=32, blank=True, help_text="A CSS colour, e.g. #2563eb.")
    language = models.CharField(max_length=8, blank=True, help_text="en, de or fr.")
    # When nobody from the team is online, visitors are told when to expect a reply from these
    # and asked for their email address (assistant/chat/offline.py).
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="The time zone of the opening hours, e.g. Europe/Berlin.",
    )
    opening_hours = models.TextField(
        blank=True,
        validators=[validate_hours],
        help_text="When your team answers chats, one rule per line, e.g. 'Mon-Fri 09:00-17:00' and "
        "'Sat 10:00-14:00'. Leave empty if you do not want to show opening hours.",
    )
    reply_time = models.CharField(
        max_length=80,
        blank=True,
        help_text="How soon you usually reply during opening hours, e.g. 'within 2 hours'. Shown to "
        "visitors as 'We usually reply within 2 hours'.",
    )

    def __str__(self) -> str:
        return self.name

    def origins(self) -> set[str]:
        lines = self.allowed_origins.splitlines()
        return {line.strip().rstrip("/").lower() for line in lines if line.strip()}

    def widget_config(self) -> dict[str, str]:
        return {
            "title": self.title,
            "greeting": self.greeting,
            "color": self.color,
            "language": self.language,
        }


class Conversation(ConcurrentTransitionMixin, models.Model):
    """Status is a state machine (django-fsm-2); saving a transition checks that the status is
    still the one it was read with, so two agents claiming at once cannot both win."""

    class Status(models.TextChoices):
        BOT = "bot"  # the assistant answers
        QUEUED = "queued"  # waiting for a person
        AGENT = "agent"  # a person has it
        CLOSED = "closed"

    # Visitors address their conversation by this id, so it must be unguessable.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    collection = models.SlugField(max_length=64, default="default")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL)
    # The visitor's id from their signed token (assistant/chat/visitors.py): only they may resume it.
    visitor = models.CharField(max_length=36, blank=True, db_index=True)
    status = FSMField(max_length=16, choices=Status.choices, default=Status.BOT)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    handoff_at = models.DateTimeField(null=True, blank=True)  # first time a person was asked for
    # Nobody was online, so the visitor left their address and the conversation became this desk
    # ticket (assistant/chat/offline.py): one per conversation.
    ticket = models.OneToOneField(
        "assistant.Ticket", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversation"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"Conversation {self.id}"

    @property
    def language(self) -> str | None:
        """The language of the site the conversation is on (None: no site, or none set)."""
        return self.site.language if self.site and self.site.language else None

    @transition(field=status, source=[Status.BOT, Status.QUEUED], target=Status.QUEUED)
    def request_person(self) -> None:
        self.handoff_at = self.handoff_at or timezone.now()

    @transition(field=status, source=Status.QUEUED, target=Status.AGENT)
    def claim(self, agent) -> None:
        self.agent = agent

    @transition(field=status, source=[Status.QUEUED, Status.AGENT], target=Status.BOT)
    def hand_back(self) -> None:
        self.agent = None

    @transition(field=status, source=[Status.BOT, Status.QUEUED], target=Status.BOT)
    def move_to_email(self, ticket) -> None:
        """Out of the live queue (if it was there): the desk answers by email now, and the
        assistant answers what the visitor asks meanwhile."""
        self.ticket = ticket

    @transition(field=status, source=[Status.BOT, Status.QUEUED, Status.AGENT], target=Status.CLOSED)
    def close(self) -> None:
        self.closed_at = timezone.now()


class AgentPresence(models.Model):
    """One open agent console socket (assistant/chat/presence.py). In the database, not in a
    process, so every server process sees every agent; a row whose socket's process died stops
    counting once `seen_at` is older than CHAT_PRESENCE_SECONDS."""

    channel = models.CharField(max_length=200, unique=True)  # the socket's channel name
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.user_id} on {self.channel}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        AGENT = "agent"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        CANCELLED = "cancelled"  # the visitor left mid-answer: what was generated is kept
        FAILED = "failed"

    class Suggestion(models.TextChoices):
        UNEDITED = "unedited", "sent unedited"
        EDITED = "edited", "edited, then sent"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    author = models.ForeignKey(  # the agent who wrote an agent message
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    created_at = models.DateTimeField(auto_now_add=True)
    # Provenance of generated answers (empty for visitor and agent messages).
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT)
    prompt_template = models.CharField(max_length=64, blank=True)
    retrieved = models.JSONField(default=list, blank=True)  # [{"chunk": id, "score": float}]
    citations = models.JSONField(default=list, blank=True)  # as sent to the visitor
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=16, blank=True)
    # The assistant could not answer (nothing retrieved, or it said it does not know) and offered
    # a person: the knowledge base's gaps, for the console's analytics.
    unanswered = models.BooleanField(default=False)
    # Per sentence: supported or not, by which chunk, with what score (answers/support.py), and
    # the answer's confidence from it; `verified`: every sentence the visitor saw is supported.
    support = models.JSONField(default=list, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    verified = models.BooleanField(default=False)
    # An agent's reply that came from a suggested reply (the copilot, assistant/copilot.py): sent
    # as suggested (whitespace aside) or edited first; empty for every other message.
    suggestion = models.CharField(max_length=8, choices=Suggestion.choices, blank=True, default="")

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"


class Feedback(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    value = models.SmallIntegerField(choices=[(1, "helpful"), (-1, "not helpful")])
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.value:+d} on message {self.message_id}"

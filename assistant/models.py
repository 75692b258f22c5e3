"""Conversations with website visitors. Every generated answer records what produced it."""

from __future__ import annotations

import uuid

from django.db import models

from inference.models import ModelVersion


class Conversation(models.Model):
    class Status(models.TextChoices):
        BOT = "bot"  # the assistant answers
        HANDOFF = "handoff"  # waiting for or talking with a person
        CLOSED = "closed"

    # Visitors address their conversation by this id, so it must be unguessable.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    collection = models.SlugField(max_length=64, default="default")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BOT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"Conversation {self.id}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        AGENT = "agent"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        CANCELLED = "cancelled"  # the visitor left mid-answer: what was generated is kept
        FAILED = "failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
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

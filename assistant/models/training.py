"""Human-approved answers kept for fine-tuning (the learning loop builds its datasets from these):
what the customer asked, what a person approved as the answer, and the sources behind it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class TrainingExample(models.Model):
    class Source(models.TextChoices):
        EMAIL = "email"  # an approved email reply
        CHAT = "chat"  # an agent-corrected chat answer
        CURATED = "curated"  # a Q&A pair written by staff

    source = models.CharField(max_length=16, choices=Source.choices)
    ticket = models.ForeignKey("assistant.Ticket", null=True, blank=True, on_delete=models.CASCADE)
    draft = models.OneToOneField("assistant.Draft", null=True, blank=True, on_delete=models.CASCADE)
    # The chat answer an agent corrected (source "chat").
    message = models.OneToOneField("assistant.Message", null=True, blank=True, on_delete=models.CASCADE)
    question = models.TextField()
    answer = models.TextField()
    context = models.JSONField(default=list, blank=True)  # earlier turns: [{role, content}]
    sources = models.JSONField(default=list, blank=True)  # citations of the knowledge base
    # Whether the final answer is the model's draft unchanged (False: an agent edited it).
    model_draft_unchanged = models.BooleanField(default=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    customer_email = models.EmailField(max_length=320, blank=True, db_index=True)  # for erasure
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.source}: {self.question[:60]}"

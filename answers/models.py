"""What the answer path owns: curated answers (PinnedAnswer), and actions that look things up in
the company's systems (Action, with an ActionCall for every attempt; answers/lookups/)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from answers.lookups.models import Action, ActionCall

__all__ = ["Action", "ActionCall", "PinnedAnswer"]


class PinnedAnswer(models.Model):
    """An approved answer to a question, returned as written instead of a generated one when it
    is asked, or a paraphrase of it (matched by embedding similarity, answers/pinned.py).

    Moved from assistant/ (issue 18) by state-only migrations: the table keeps its name and rows."""

    collection = models.SlugField(max_length=64, default="default")
    question = models.CharField(max_length=500)
    paraphrases = models.TextField(blank=True, help_text="Other ways to ask it, one per line.")
    answer = models.TextField()
    source_title = models.CharField(max_length=300, blank=True)
    source_url = models.CharField(max_length=500, blank=True, help_text="https://... or /kb/ID/")
    active = models.BooleanField(default=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "assistant_pinnedanswer"
        ordering = ["collection", "question"]

    def __str__(self) -> str:
        return self.question

    def phrasings(self) -> list[str]:
        return [self.question, *(line.strip() for line in self.paraphrases.splitlines() if line.strip())]

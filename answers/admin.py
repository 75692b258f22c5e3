from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from answers.models import PinnedAnswer


@admin.register(PinnedAnswer)
class PinnedAnswerAdmin(admin.ModelAdmin[PinnedAnswer]):
    """Curated answers; whoever saves one is recorded as its approver."""

    list_display = ("question", "collection", "active", "approved_by", "updated_at")
    list_filter = ("active", "collection")
    search_fields = ("question", "paraphrases", "answer")
    readonly_fields = ("approved_by", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: PinnedAnswer, form: Any, change: bool) -> None:
        obj.approved_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

"""How a brief comes in: the studio's form for it, and `create_brief`, which stores the brief and
its (still empty) item and queues the generation once the rows are committed. The studio page
and the API both create briefs through `create_brief`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction

from content.errors import StudioError
from content.models import Brief, ContentItem
from core import jobs
from retrieval.models import Document

# What a caller may set on a brief; anything else is refused, not ignored.
BRIEF_FIELDS = frozenset(
    {
        "topic",
        "keyphrase",
        "audience",
        "tone",
        "language",
        "length",
        "style_guide",
        "collection",
        "with_images",
    }
)
MAX_STYLE_GUIDE_CHARS = 20_000
MAX_REFERENCES = 20


class BriefForm(forms.Form):
    """The studio's "New brief" form; the same limits as the API's BriefIn."""

    topic = forms.CharField(max_length=200)
    keyphrase = forms.CharField(max_length=100)
    audience = forms.CharField(max_length=200, required=False)
    tone = forms.CharField(max_length=50, required=False)
    language = forms.CharField(min_length=2, max_length=8, initial="en")
    length = forms.ChoiceField(choices=Brief.Length.choices, initial=Brief.Length.MEDIUM)
    style_guide = forms.CharField(widget=forms.Textarea, max_length=MAX_STYLE_GUIDE_CHARS, required=False)
    with_images = forms.BooleanField(required=False, initial=True)

    def clean_style_guide(self) -> str:
        # Browsers send CRLF line ends from a textarea; briefs are stored with LF.
        return self.cleaned_data["style_guide"].replace("\r\n", "\n").replace("\r", "\n")


def create_brief(user, data: Mapping[str, Any]) -> ContentItem:
    """Store a brief and its item (titled with the topic until the model writes one), and queue
    the generation after the commit. `data` holds Brief fields and optionally `references`
    (document ids). Raises StudioError (400) for unknown fields, blank or too long values and
    unknown reference documents."""
    fields = dict(data)
    references = list(fields.pop("references", None) or [])
    unknown = set(fields) - BRIEF_FIELDS
    if unknown:
        raise StudioError("bad_request", f"Unknown brief field(s): {', '.join(sorted(unknown))}.", 400)
    # Bounded like the database's ids: a bigger number is no id, and SQLite raises on it.
    if not all(isinstance(r, int) and not isinstance(r, bool) and 0 < r < 2**63 for r in references):
        raise StudioError("bad_request", "references are document ids.", 400)
    if len(references) > MAX_REFERENCES:
        raise StudioError("bad_request", f"A brief names at most {MAX_REFERENCES} references.", 400)
    fields = {k: v.strip() if isinstance(v, str) else v for k, v in fields.items()}
    if len(fields.get("style_guide") or "") > MAX_STYLE_GUIDE_CHARS:
        raise StudioError(
            "too_large", f"The style guide is longer than {MAX_STYLE_GUIDE_CHARS} characters.", 413
        )
    brief = Brief(created_by=user, **fields)
    try:
        # The model's own limits (lengths, the length choice, blank topic or keyphrase).
        brief.full_clean(exclude=["created_by", "references"])
    except ValidationError as exc:
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in exc.message_dict.items())
        raise StudioError("bad_request", f"The brief is not valid ({problems}).", 400) from exc
    found = set(Document.objects.filter(pk__in=references).values_list("pk", flat=True))
    if set(references) - found:
        raise StudioError("unknown_document", "A reference document does not exist.", 400)
    with transaction.atomic():
        brief.save()
        brief.references.set(found)
        item = ContentItem.objects.create(brief=brief, title=brief.topic)
        transaction.on_commit(lambda: jobs.enqueue("content.generate", item.pk))
    return item

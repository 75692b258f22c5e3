"""Regenerating one part of an item (the introduction, the meta description, the FAQ or a
section) with the model, for an editor: `request` checks the part and queues the
`content.regenerate_part` task, so the studio page answers at once; the task (content/tasks.py)
runs content/generation.py's `regenerate_part` and records here how it went. The Regeneration
row says queued, running, done (with the revision it saved) or failed (with why); the item's
page shows it and follows it until it is done.

One regeneration per item at a time: the new text is written against the revision saved when
it runs, and a second one would only race it. A request older than STALE_AFTER that is still
queued or running lost its worker (a restart); the next request marks it failed and goes ahead.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from content.errors import StudioError
from content.models import ContentItem, Regeneration
from core import jobs

PART_LABELS = {"intro": "the introduction", "meta_description": "the meta description", "faq": "the FAQ"}
# A regeneration is one part, a few hundred tokens: minutes at most even on a busy CPU worker.
STALE_AFTER = timedelta(minutes=15)
IN_FLIGHT = (Regeneration.Status.QUEUED, Regeneration.Status.RUNNING)


def _section(item: ContentItem, part: str) -> dict | None:
    return next((s for s in item.sections if isinstance(s, dict) and s.get("id") == part), None)


def part_label(item: ContentItem, part: str) -> str:
    """How the page names a part: "the introduction", "the section “Quick fixes”", and for
    the fact check one FAQ answer: "FAQ answer 2"."""
    if part in PART_LABELS:
        return PART_LABELS[part]
    if part.startswith("faq-") and part[4:].isdigit():
        return f"FAQ answer {part[4:]}"
    section = _section(item, part)
    heading = (section.get("heading") if section else None) or part
    return f"the section “{heading}”"


def in_flight(item: ContentItem) -> Regeneration | None:
    """The item's regeneration that is queued or running now; one older than STALE_AFTER lost
    its worker and does not count."""
    return (
        item.regenerations.filter(status__in=IN_FLIGHT, created_at__gt=timezone.now() - STALE_AFTER)
        .order_by("-created_at", "-id")
        .first()
    )


def still_writing(item: ContentItem) -> str | None:
    """Why the item's text is not final yet (the model is writing the article, or rewriting one
    part of it), as the page and a refused move say it; None when the text is what it is.
    Submitting, approving and publishing wait for it (content/review.py's `transition`)."""
    if item.generation in (ContentItem.Generation.QUEUED, ContentItem.Generation.RUNNING):
        doing = f" (now: {item.step})" if item.step and item.step != "starting" else ""
        return (
            f"Still writing: the model is writing the article{doing}. "
            "Submitting, approving and publishing wait until it is done."
        )
    job = in_flight(item)
    if job is not None:
        return (
            f"Still writing: the model is rewriting {part_label(item, job.part)}. "
            "Submitting, approving and publishing wait until it is saved."
        )
    return None


def request(item: ContentItem, part: str, user) -> Regeneration:
    """Queue a new text for `part`, the rest untouched. Refused (StudioError) while the article
    is being written, for a part the item does not have, and while another part is regenerating."""
    if item.generation != ContentItem.Generation.DONE:
        raise StudioError("generating", "The article is still being generated.")
    if part not in PART_LABELS and _section(item, part) is None:
        choices = ", ".join(PART_LABELS)
        raise StudioError("bad_request", f"No part called {part!r}: use {choices} or a section id.", 400)
    now = timezone.now()
    with transaction.atomic():
        ContentItem.objects.select_for_update().get(pk=item.pk)  # one request at a time
        running = item.regenerations.filter(status__in=IN_FLIGHT).first()
        if running is not None and running.created_at > now - STALE_AFTER:
            raise StudioError(
                "regenerating",
                f"The model is rewriting {part_label(item, running.part)}; wait until it is saved.",
            )
        if running is not None:
            fail(running, "No worker finished it; it was given up when a new regeneration was asked for.")
        job = Regeneration.objects.create(item=item, part=part, requested_by=user)
        transaction.on_commit(lambda: jobs.enqueue("content.regenerate_part", job.pk))
    return job


def start(regeneration_id: int) -> Regeneration | None:
    """Claim a queued regeneration for this worker; None when it ran already or was given up
    (a redelivered task does nothing)."""
    claimed = Regeneration.objects.filter(pk=regeneration_id, status=Regeneration.Status.QUEUED).update(
        status=Regeneration.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    return Regeneration.objects.select_related("item__brief", "requested_by").get(pk=regeneration_id)


def finish(job: Regeneration, revision: int | None) -> Regeneration:
    """Done: `revision` is the one it saved, None when the model wrote the same text again."""
    return _end(job, status=Regeneration.Status.DONE, revision=revision)


def fail(job: Regeneration, error: str) -> Regeneration:
    return _end(job, status=Regeneration.Status.FAILED, error=error[:2000])


def _end(job: Regeneration, **fields) -> Regeneration:
    fields["finished_at"] = timezone.now()
    Regeneration.objects.filter(pk=job.pk).update(**fields)
    for name, value in fields.items():
        setattr(job, name, value)
    return job

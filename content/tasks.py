"""Celery tasks of the content studio; each body is a plain function tests call directly.

Work is queued by task name (`core.jobs.enqueue("content.generate", pk)`), so this is the only
module that imports the modules doing the work, and none of them imports it."""

from __future__ import annotations

import logging

from celery import shared_task

from content import generation, images, regeneration, webhooks
from content.errors import StudioError
from inference.base import InferenceError

log = logging.getLogger(__name__)


@shared_task(name="content.generate")
def content_generate(item_id: int) -> int | None:
    item = generation.generate(item_id)
    return item.pk if item else None


@shared_task(name="content.regenerate_part")
def content_regenerate_part(regeneration_id: int) -> str | None:
    """An editor's "regenerate this part" (content/regeneration.py queued it): the model writes
    the part again and it is saved as a new revision by the editor who asked. Refusals and model
    failures are recorded on the Regeneration, where the item's page shows them."""
    job = regeneration.start(regeneration_id)
    if job is None:
        return None
    before = job.item.revision
    try:
        saved = generation.regenerate_part(job.item, job.part, user=job.requested_by)
    except StudioError as exc:  # an edit saved meanwhile, a part removed meanwhile
        regeneration.fail(job, exc.message)
    except InferenceError as exc:
        regeneration.fail(job, f"The model could not rewrite it: {exc.message}")
    except Exception as exc:
        log.exception("event=content_regeneration_failed regeneration=%s", job.pk)
        regeneration.fail(job, f"{type(exc).__name__}: {exc}")
    else:
        regeneration.finish(job, saved.revision if saved.revision != before else None)
    return job.status


@shared_task(name="content.render_image")
def content_render_image(image_id: int) -> str | None:
    image = images.render(image_id)
    return image.status if image else None


@shared_task(name="content.deliver_webhook")
def content_deliver_webhook(delivery_id: int) -> str:
    return webhooks.deliver(delivery_id)


@shared_task(name="content.deliver_due_webhooks")
def content_deliver_due_webhooks() -> int:
    return webhooks.deliver_due()

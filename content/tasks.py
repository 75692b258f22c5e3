"""Celery tasks of the content studio; each body is a plain function tests call directly."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="content.generate")
def content_generate(item_id: int) -> int | None:
    from content.generation import generate

    item = generate(item_id)
    return item.pk if item else None


@shared_task(name="content.render_image")
def content_render_image(image_id: int) -> str | None:
    from content.images import render

    image = render(image_id)
    return image.status if image else None


@shared_task(name="content.deliver_webhook")
def content_deliver_webhook(delivery_id: int) -> str:
    from content.webhooks import deliver

    return deliver(delivery_id)


@shared_task(name="content.deliver_due_webhooks")
def content_deliver_due_webhooks() -> int:
    from content.webhooks import deliver_due

    return deliver_due()

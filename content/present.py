"""Content items as the API and the studio show them, and as the exports take them."""

from __future__ import annotations

from typing import Any

from content.article import article_fields, compose_body, field_diff
from content.export import article_html
from content.images import image_path, preview_path
from content.models import ContentImage, ContentItem, Regeneration, WebhookDelivery
from content.regeneration import part_label, still_writing
from core.present import iso


def _user(user) -> str | None:
    return user.get_username() if user else None


def image_data(image: ContentImage) -> dict[str, Any]:
    return {
        "id": image.pk,
        "slot": image.slot,
        "status": image.status,
        "prompt": image.prompt,
        "negative_prompt": image.negative_prompt,
        "alt": image.alt,
        "seed": image.seed,
        "steps": image.steps,
        "width": image.width,
        "height": image.height,
        "model_version": image.model_version or None,
        "ai_generated": True,
        "meaningful": image.meaningful,
        "chosen": image.chosen,
        "rejected": image.rejected,
        "error": image.error or None,
        "url": f"/api/content/images/{image.pk}.png" if image.status == ContentImage.Status.DONE else None,
        "progress": image.progress,
        "preview_url": f"/api/content/images/{image.pk}/preview.png"
        if image.status == ContentImage.Status.RUNNING and preview_path(image).exists()
        else None,
    }


def summary(item: ContentItem) -> dict[str, Any]:
    return {
        "id": item.pk,
        "title": item.title or item.brief.topic,
        "keyphrase": item.brief.keyphrase,
        "state": item.state,
        "generation": {
            "status": item.generation,
            "progress": item.progress,
            "step": item.step,
            "error": item.error or None,
        },
        "assignee": _user(item.assignee),
        "due_date": iso(item.due_date),
        "revision": item.revision,
        "updated_at": iso(item.updated_at),
    }


def detail(item: ContentItem) -> dict[str, Any]:
    brief = item.brief
    revisions = list(item.revisions.select_related("author").order_by("number"))
    return {
        **summary(item),
        "brief": {
            "topic": brief.topic,
            "keyphrase": brief.keyphrase,
            "audience": brief.audience,
            "tone": brief.tone,
            "language": brief.language,
            "length": brief.length,
            "style_guide": brief.style_guide,
            "collection": brief.collection,
            "with_images": brief.with_images,
            "references": list(brief.references.values_list("pk", flat=True)),
        },
        "fields": {
            "title": item.title,
            "meta_title": item.meta_title,
            "meta_description": item.meta_description,
            "slug": item.slug,
            "intro": item.intro,
            "sections": item.sections,
            "faq": item.faq,
            "image_prompts": item.image_prompts,
        },
        "body": compose_body(item),
        "checks": item.checks,
        "overrides": item.overrides,
        # The fact check: each sentence with its verdict, source number and evidence passage.
        "support": item.support,
        "images": [image_data(i) for i in item.images.all()],
        "comments": [
            {
                "id": c.pk,
                "anchor": c.anchor,
                "author": _user(c.author),
                "text": c.text,
                "resolved": c.resolved,
                "at": iso(c.created_at),
            }
            for c in item.comments.select_related("author")
        ],
        "revisions": [
            {
                "number": r.number,
                "author": _user(r.author) or "model",
                "note": r.note,
                "at": iso(r.created_at),
                "changed": field_diff(revisions[i - 1].fields, r.fields) if i else {},
            }
            for i, r in enumerate(revisions)
        ],
        "history": [
            {
                "action": s.action,
                "from": s.from_state,
                "to": s.to_state,
                "user": _user(s.user),
                "reason": s.reason or None,
                "at": iso(s.created_at),
            }
            for s in item.state_changes.select_related("user")
        ],
        "provenance": {
            "model_version": item.model_version.key if item.model_version else None,
            "prompt_template": item.prompt_template,
            "retrieved": item.retrieved,
        },
        "approved_by": _user(item.approved_by),
        "approved_at": iso(item.approved_at),
        "published_at": iso(item.published_at),
        "deliveries": [delivery_data(d) for d in item.deliveries.all()],
        "regeneration": regeneration_data(item.regenerations.select_related("item", "requested_by").first()),
        # Why submitting, approving and publishing wait (the model is writing), or None.
        "still_writing": still_writing(item),
    }


def regeneration_data(job: Regeneration | None) -> dict[str, Any] | None:
    """The item's latest "regenerate one part" request (content/regeneration.py): what it
    rewrites, how far it got and what came of it; None when nobody asked for one."""
    if job is None:
        return None
    return {
        "id": job.pk,
        "part": job.part,
        "label": part_label(job.item, job.part),
        "status": job.status,
        "requested_by": _user(job.requested_by),
        "requested_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "revision": job.revision,
        "error": job.error or None,
    }


def delivery_data(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "url": delivery.url,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error or None,
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.status == "retry" else None,
        "delivered_at": iso(delivery.delivered_at),
        "log": delivery.log,
    }


def export_item(item: ContentItem, *, with_png: bool = True) -> dict[str, Any]:
    """The dict content/export/ takes: the text, the chosen images (with their bytes) and
    who approved it with which model."""
    images = []
    for image in item.images.filter(chosen=True, status=ContentImage.Status.DONE):
        data = image_data(image) | {
            "filename": f"image-{image.slot + 1}-{image.pk}.png",
            "guidance": image.guidance,
        }
        if with_png:
            data["png"] = image_path(image).read_bytes()
        images.append(data)
    return {
        "id": item.pk,
        "state": item.state,
        "language": item.brief.language,
        "keyphrase": item.brief.keyphrase,
        **article_fields(item),
        "images": images,
        "approved_by": _user(item.approved_by),
        "approved_at": iso(item.approved_at),
        "published_at": iso(item.published_at),
        "model_version": item.model_version.key if item.model_version else "",
        "prompt_template": item.prompt_template,
        "revision": item.revision,
    }


def article_preview(item: ContentItem) -> str:
    """The article as it will be published (the export's text, FAQ and chosen images), as
    sanitised HTML (content/export/page.py's `article_html`: Markdown without raw HTML, then
    nh3), the images loaded from the studio's API. Raises ExportError as the export would."""
    return article_html(export_item(item, with_png=False), src=lambda image: str(image["url"]))

"""Image candidates for an item's image prompts, made by the configured ImageGenerator (the real
diffusers path; offline, the built-in small pipeline, whose pictures are not meaningful and are
labelled so). One Celery task per candidate; a queued candidate can be cancelled."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from django.conf import settings
from django.db import transaction

from content.errors import StudioError
from content.models import ContentImage, ContentItem
from core import jobs
from inference.base import ImageCancelled, InferenceError
from inference.services import get_image_generator

log = logging.getLogger(__name__)


def preset(name: str) -> tuple[int, int]:
    try:
        width, height = settings.CONTENT_IMAGE_PRESETS[name]
    except (KeyError, TypeError, ValueError) as exc:
        names = ", ".join(settings.CONTENT_IMAGE_PRESETS)
        raise StudioError("invalid_size", f"Unknown image size {name!r}; use one of: {names}.", 400) from exc
    return int(width), int(height)


def _number(spec: dict, name: str, kind: type):
    """An optional per-prompt generation setting (steps, guidance, seed), checked here so a
    bad one is refused when queued; the image model checks its own ranges when it runs."""
    raw = spec.get(name)
    if raw in (None, ""):
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError) as exc:
        raise StudioError("bad_request", f"The image {name} must be a number.", 400) from exc
    if value < 0:
        raise StudioError("bad_request", f"The image {name} must not be negative.", 400)
    return value


def queue_images(
    item: ContentItem, slot: int | None = None, candidates: int | None = None
) -> list[ContentImage]:
    """Queue candidates for every image prompt (or one slot); returns the new rows."""
    prompts = list(enumerate(item.image_prompts))
    if slot is not None:
        if not 0 <= slot < len(prompts):
            raise StudioError("bad_request", "No image prompt with that number.", 400)
        prompts = [prompts[slot]]
    rows = []
    with transaction.atomic():
        for n, spec in prompts:
            width, height = preset(spec.get("size") or "square")
            steps, guidance, seed = (
                _number(spec, "steps", int),
                _number(spec, "guidance", float),
                _number(spec, "seed", int),
            )
            count = candidates or settings.CONTENT_IMAGE_CANDIDATES
            for k in range(count):
                rows.append(
                    ContentImage.objects.create(
                        item=item,
                        slot=n,
                        prompt=spec["prompt"],
                        negative_prompt=spec.get("negative_prompt", ""),
                        alt=spec.get("alt", ""),
                        # A given seed makes the first candidate reproducible; the rest follow it.
                        seed=(seed + k) % 2**32 if seed is not None else secrets.randbelow(2**32),
                        steps=steps or settings.CONTENT_IMAGE_STEPS,
                        guidance=guidance,
                        width=width,
                        height=height,
                    )
                )
        ids = [row.pk for row in rows]
        transaction.on_commit(lambda: _enqueue(ids))
    return rows


def _enqueue(ids: list[int]) -> None:
    for pk in ids:
        jobs.enqueue("content.render_image", pk)


def cancel(image: ContentImage) -> bool:
    """Cancel a queued or running candidate; True when it was. A running one stops after its
    current denoising step (the generation's progress callback sees the new status)."""
    return bool(
        ContentImage.objects.filter(
            pk=image.pk, status__in=[ContentImage.Status.QUEUED, ContentImage.Status.RUNNING]
        ).update(status=ContentImage.Status.CANCELLED)
    )


def preview_path(image: ContentImage) -> Path:
    return Path(settings.DATA_DIR) / "content" / "images" / str(image.item_id) / f"{image.pk}.preview.png"


def _progress_reporter(image: ContentImage):
    """The generator's per-step callback: stores the progress and the step preview (a small
    picture of where the denoising is going), and says stop once the image was cancelled."""
    target = preview_path(image)

    def report(step: int, total: int, preview=None) -> bool:
        if preview is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            preview.save(partial, format="PNG")
            partial.replace(target)
        updated = ContentImage.objects.filter(pk=image.pk, status=ContentImage.Status.RUNNING).update(
            progress=min(99, round(100 * step / max(total, 1)))
        )
        return bool(updated)  # 0 rows: cancelled meanwhile

    return report


def image_path(image: ContentImage) -> Path:
    return Path(settings.DATA_DIR) / image.path


def render(image_id: int) -> ContentImage | None:
    """Make one candidate (a Celery task body); a cancelled or already made one is left alone."""
    if not ContentImage.objects.filter(pk=image_id, status=ContentImage.Status.QUEUED).update(
        status=ContentImage.Status.RUNNING
    ):
        return None
    image = ContentImage.objects.get(pk=image_id)
    try:
        generator = get_image_generator()
        result = generator.generate(
            image.prompt,
            image.negative_prompt,
            width=image.width,
            height=image.height,
            steps=image.steps,
            guidance=image.guidance,
            seed=image.seed,
            progress=_progress_reporter(image),
        )
    except ImageCancelled:
        log.info("event=content_image_cancelled image=%s", image.pk)
        image.refresh_from_db()
        return image
    except InferenceError as exc:
        ContentImage.objects.filter(pk=image.pk).update(status=ContentImage.Status.FAILED, error=exc.message)
        log.warning("event=content_image_failed image=%s code=%s", image.pk, exc.code)
        image.refresh_from_db()
        return image
    relative = Path("content") / "images" / str(image.item_id) / f"{image.pk}.png"
    target = Path(settings.DATA_DIR) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(result.png())
    ContentImage.objects.filter(pk=image.pk, status=ContentImage.Status.RUNNING).update(
        status=ContentImage.Status.DONE,
        progress=100,
        path=str(relative),
        model_version=result.model_version,
        meaningful=generator.meaningful,
    )
    image.refresh_from_db()
    return image


def choose(image: ContentImage, *, chosen: bool = True) -> ContentImage:
    """Choose a finished candidate for its slot (the others in the slot are unchosen)."""
    if image.status != ContentImage.Status.DONE:
        raise StudioError("conflict", "Only a finished image can be chosen.")
    with transaction.atomic():
        if chosen:
            ContentImage.objects.filter(item=image.item_id, slot=image.slot).update(chosen=False)
        ContentImage.objects.filter(pk=image.pk).update(
            chosen=chosen, rejected=False if chosen else image.rejected
        )
    image.refresh_from_db()
    return image


def reject(image: ContentImage) -> ContentImage:
    """Reject a candidate (and unchoose it): the gallery shows it set aside."""
    ContentImage.objects.filter(pk=image.pk).update(rejected=True, chosen=False)
    image.refresh_from_db()
    return image

"""Content studio API: briefs in, reviewed articles out. Staff with the editor role.

Edits carry the revision they started from (a newer one is a 409 `edit_conflict`); state moves
go through content/review.py's `transition`, which only a named editor can make. The services'
refusals (StudioError, ExportError) are DomainErrors: config/api.py's one handler answers them."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import FileResponse, HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status

from content import export as exporters
from content import images, present, regeneration, review, webhooks
from content.briefs import create_brief as create
from content.models import ContentImage, ContentItem, WebhookDelivery
from core.auth import require_api_role
from core.errors import DomainError
from core.roles import EDITOR

router = Router(tags=["content studio"])


class BriefIn(Schema):
    topic: str = Field(..., min_length=1, max_length=200)
    keyphrase: str = Field(..., min_length=1, max_length=100)
    audience: str = Field("", max_length=200)
    tone: str = Field("", max_length=50)
    language: str = Field("en", min_length=2, max_length=8)
    length: Literal["short", "medium", "long"] = "medium"
    style_guide: str = Field("", max_length=20_000)
    collection: str = Field("default", min_length=1, max_length=64)
    references: list[int] = Field(default_factory=list, max_length=20)
    with_images: bool = True


class ItemFilter(Schema):
    state: str | None = None
    q: str | None = None
    assignee: str | None = None
    limit: int = 50
    offset: int = 0


class EditIn(Schema):
    revision: int  # the revision the editor started from
    fields: dict[str, Any]
    note: str = ""


class TransitionIn(Schema):
    to: str
    reason: str = ""
    overrides: dict[str, str] = Field(default_factory=dict)


class CommentIn(Schema):
    anchor: str
    text: str


class PartIn(Schema):
    part: str  # "intro", "meta_description", "faq" or a section id


class AssignIn(Schema):
    assignee: str | None = None
    due_date: date | None = None


def _item(request: HttpRequest, item_id: str) -> ContentItem:
    require_api_role(request, EDITOR)
    return review.get_item(item_id)


@router.post(
    "/content/briefs", response={202: dict}, summary="A brief: the article is generated in the background"
)
def create_brief(request: HttpRequest, payload: BriefIn):
    require_api_role(request, EDITOR)
    item = create(request.user, payload.dict())
    return Status(202, {"id": item.pk, "generation": item.generation})


@router.get("/content/items", summary="Items by state, search and assignee")
def list_items(request: HttpRequest, filters: Query[ItemFilter]) -> dict[str, Any]:
    require_api_role(request, EDITOR)
    items = ContentItem.objects.select_related("brief", "assignee")
    if filters.state:
        if filters.state not in ContentItem.State.values:
            raise DomainError(
                "bad_state", f"state must be one of: {', '.join(ContentItem.State.values)}.", 400
            )
        items = items.filter(state=filters.state)
    if filters.q:
        items = items.filter(Q(title__icontains=filters.q) | Q(brief__keyphrase__icontains=filters.q))
    if filters.assignee:
        items = items.filter(assignee__username=filters.assignee)
    limit, offset = min(max(filters.limit, 1), 200), max(filters.offset, 0)
    return {"count": items.count(), "items": [present.summary(i) for i in items[offset : offset + limit]]}


@router.get(
    "/content/items/{item_id}",
    summary="An item: state, fields, checks, fact check, images, revisions with diffs",
)
def get_item(request: HttpRequest, item_id: str) -> dict[str, Any]:
    return present.detail(_item(request, item_id))


@router.patch("/content/items/{item_id}", summary="Edit fields, from the revision you started with")
def edit_item(request: HttpRequest, item_id: str, payload: EditIn) -> dict[str, Any]:
    item = _item(request, item_id)
    saved = review.save_fields(
        item, payload.fields, user=request.user, base_revision=payload.revision, note=payload.note
    )
    return present.detail(saved)


@router.post(
    "/content/items/{item_id}/transition",
    summary="Move the item: in_review, changes_requested, approved, published",
)
def transition(request: HttpRequest, item_id: str, payload: TransitionIn) -> dict[str, Any]:
    item = _item(request, item_id)
    moved = review.transition(
        item, payload.to, user=request.user, reason=payload.reason, overrides=payload.overrides
    )
    return present.summary(moved)


@router.post(
    "/content/items/{item_id}/regenerate",
    response={202: dict},
    summary="Rewrite one part in the background; the rest stays",
)
def regenerate(request: HttpRequest, item_id: str, payload: PartIn):
    """Queues the `content.regenerate_part` task (the model does not write inside a web request)
    and answers 202 with the request: `GET /api/content/items/{id}` shows it under
    "regeneration" (queued, running, done with the revision it saved, or failed with why)."""
    job = regeneration.request(_item(request, item_id), payload.part, request.user)
    return Status(202, present.regeneration_data(job))


@router.post(
    "/content/items/{item_id}/comments", response={201: dict}, summary="Comment on a section or field"
)
def comment(request: HttpRequest, item_id: str, payload: CommentIn):
    created = review.add_comment(_item(request, item_id), request.user, payload.anchor, payload.text)
    return Status(201, {"id": created.pk, "anchor": created.anchor, "text": created.text})


@router.post("/content/items/{item_id}/assign", summary="Set the assignee and due date")
def assign(request: HttpRequest, item_id: str, payload: AssignIn) -> dict[str, Any]:
    item = _item(request, item_id)
    assignee = None
    if payload.assignee:
        assignee = get_user_model().objects.filter(username=payload.assignee).first()
        if assignee is None:
            raise DomainError("unknown_editor", "No editor with that name.", 400)
    return present.summary(review.assign(item, request.user, assignee, payload.due_date))


@router.post("/content/items/{item_id}/comments/{comment_id}/resolve", summary="Mark a comment resolved")
def resolve_comment(request: HttpRequest, item_id: str, comment_id: str) -> dict[str, Any]:
    comment = review.resolve_comment(_item(request, item_id), comment_id)
    return {"id": comment.pk, "resolved": comment.resolved}


@router.get("/content/items/{item_id}/export", summary="Markdown with front matter, HTML or JSON")
def export(
    request: HttpRequest,
    item_id: str,
    format: Literal["md", "html", "json", "zip"] = "md",
    strip_metadata: bool = False,
):  # noqa: A002
    item = _item(request, item_id)
    if item.state not in (ContentItem.State.APPROVED, ContentItem.State.PUBLISHED):
        raise DomainError("not_approved", "Only approved or published items are exported.", 409)
    data = present.export_item(item)
    if format == "json":
        return exporters.to_json(data)
    if format == "zip":
        response = HttpResponse(
            exporters.bundle(data, strip_metadata=strip_metadata), content_type="application/zip"
        )
        response["Content-Disposition"] = f'attachment; filename="{item.slug or item.pk}.zip"'
        return response
    if format == "html":
        return HttpResponse(exporters.to_html(data), content_type="text/html; charset=utf-8")
    return HttpResponse(exporters.to_markdown(data), content_type="text/markdown; charset=utf-8")


@router.post(
    "/content/items/{item_id}/images", response={202: dict}, summary="More candidates for one image prompt"
)
def more_images(request: HttpRequest, item_id: str, slot: int):
    rows = images.queue_images(_item(request, item_id), slot)
    return Status(202, {"queued": [r.pk for r in rows]})


def _image(request: HttpRequest, image_id: str) -> ContentImage:
    require_api_role(request, EDITOR)
    try:
        return ContentImage.objects.get(pk=int(image_id))
    except (ValueError, ContentImage.DoesNotExist) as exc:
        raise DomainError("not_found", "No such image.", 404) from exc


# Before the {action} route below: Django tries URL patterns in order, and that one would take
# "preview.png" as an action (and answer a GET with 405).
@router.get("/content/images/{image_id}/preview.png", summary="The latest step preview of a running image")
def image_preview(request: HttpRequest, image_id: str):
    image = _image(request, image_id)
    path = images.preview_path(image)
    if not path.exists():
        raise DomainError("not_found", "No preview for that image.", 404)
    return FileResponse(path.open("rb"), content_type="image/png")


@router.post("/content/images/{image_id}/{action}", summary="choose, reject or cancel an image candidate")
def image_action(
    request: HttpRequest, image_id: str, action: Literal["choose", "reject", "cancel"]
) -> dict[str, Any]:
    image = _image(request, image_id)
    if action == "choose":
        image = images.choose(image)
    elif action == "reject":
        image = images.reject(image)
    elif not images.cancel(image):
        raise DomainError("conflict", "Only a queued or running image can be cancelled.", 409)
    else:
        image.refresh_from_db()
    return present.image_data(image)


@router.get("/content/images/{image_id}.png", summary="An image candidate (PNG with its metadata)")
def image_file(request: HttpRequest, image_id: str):
    image = _image(request, image_id)
    if image.status != ContentImage.Status.DONE:
        raise DomainError("not_found", "That image is not ready.", 404)
    return FileResponse(images.image_path(image).open("rb"), content_type="image/png")


@router.post("/content/deliveries/{delivery_id}/retry", summary="Send a failed CMS delivery again")
def retry_delivery(request: HttpRequest, delivery_id: str) -> dict[str, Any]:
    require_api_role(request, EDITOR)
    try:
        delivery = WebhookDelivery.objects.get(pk=int(delivery_id))
    except (ValueError, WebhookDelivery.DoesNotExist) as exc:
        raise DomainError("not_found", "No such delivery.", 404) from exc
    if delivery.status != WebhookDelivery.Status.FAILED:
        raise DomainError("conflict", "Only a failed delivery is sent again.", 409)
    return present.delivery_data(webhooks.retry(delivery))

"""Every change to a content item: its text (with the revision the editor started from), its state
(one transition function that records who, when and why), comments, assignment and check
overrides. The API, the studio pages and the generation task all call these.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed
from slugify import slugify

from content.article import snapshot
from content.errors import StudioError
from content.models import TEXT_FIELDS, Comment, ContentItem, Revision, StateChange
from content.quality import run_checks
from content.regeneration import still_writing
from content.webhooks import queue_delivery
from core import transitions
from core.roles import EDITOR, has_role

LIMITS = {"title": 300, "meta_title": 300, "meta_description": 500, "slug": 200, "intro": 20_000}
MAX_SECTIONS, MAX_SECTION_CHARS, MAX_FAQ = 30, 20_000, 30


def get_item(item_id: Any) -> ContentItem:
    try:
        return ContentItem.objects.select_related("brief").get(pk=int(item_id))
    except (TypeError, ValueError, ContentItem.DoesNotExist) as exc:
        raise StudioError("not_found", "No such content item.", 404) from exc


def _clean(changes: dict[str, Any]) -> dict[str, Any]:
    """Validated text fields: lengths, shapes. Unknown fields are refused, not ignored."""
    unknown = set(changes) - set(TEXT_FIELDS)
    if unknown:
        raise StudioError("bad_request", f"Unknown field(s): {', '.join(sorted(unknown))}.", 400)
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        if name in LIMITS:
            if not isinstance(value, str):
                raise StudioError("bad_request", f"{name} must be text.", 400)
            if len(value) > LIMITS[name]:
                raise StudioError("too_large", f"{name} is longer than {LIMITS[name]} characters.", 413)
            cleaned[name] = slugify(value, allow_unicode=True)[:200] if name == "slug" else value.strip()
        elif name == "sections":
            cleaned[name] = _sections(value)
        elif name == "faq":
            cleaned[name] = _pairs(value, ("question", "answer"), MAX_FAQ)
        elif name == "image_prompts":
            cleaned[name] = _pairs(
                value,
                ("prompt", "alt"),
                10,
                optional=("negative_prompt", "size", "steps", "guidance", "seed"),
            )
    return cleaned


def _sections(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_SECTIONS:
        raise StudioError("bad_request", f"sections must be a list of at most {MAX_SECTIONS}.", 400)
    sections, seen = [], set()
    for n, section in enumerate(value, start=1):
        if not isinstance(section, dict) or not isinstance(section.get("heading", ""), str):
            raise StudioError("bad_request", "Each section needs a heading and text.", 400)
        text = section.get("text", "")
        if not isinstance(text, str) or len(text) > MAX_SECTION_CHARS:
            raise StudioError(
                "bad_request", f"A section's text is text of at most {MAX_SECTION_CHARS} chars.", 400
            )
        sid = str(section.get("id") or f"s{n}")[:16]
        while sid in seen:
            sid = f"{sid}x"
        seen.add(sid)
        sections.append(
            {"id": sid, "heading": section.get("heading", "").strip()[:300], "text": text.strip()}
        )
    return sections


def _pairs(
    value: Any, keys: tuple[str, str], most: int, optional: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > most:
        raise StudioError("bad_request", f"Expected a list of at most {most} entries.", 400)
    rows = []
    for row in value:
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in keys):
            raise StudioError("bad_request", f"Each entry needs {' and '.join(keys)} as text.", 400)
        kept = {k: row[k].strip()[:5000] for k in keys}
        kept |= {k: str(row[k])[:5000] for k in optional if k in row}
        rows.append(kept)
    return rows


def save_fields(
    item: ContentItem, changes: dict[str, Any], *, user, base_revision: int | None, note: str = ""
) -> ContentItem:
    """Apply an edit made from `base_revision`. If someone saved since, nothing is written and
    the editor gets a conflict (with who saved), never a silent overwrite. An edit of an
    approved or published item sends it back to review."""
    cleaned = _clean(changes)
    with transaction.atomic():
        current = ContentItem.objects.select_for_update().get(pk=item.pk)
        if base_revision is not None and base_revision != current.revision:
            last = current.revisions.order_by("-number").first()
            who = last.author.get_username() if last and last.author else "the model"
            raise StudioError(
                "edit_conflict",
                f"{who} saved revision {current.revision} after the {base_revision} you edited; "
                "reload to see their changes, then apply yours.",
            )
        changed = {k: v for k, v in cleaned.items() if getattr(current, k) != v}
        if not changed:
            return current
        for name, value in changed.items():
            setattr(current, name, value)
        current.revision += 1
        ContentItem.objects.filter(pk=current.pk).update(
            revision=current.revision, updated_at=timezone.now(), **changed
        )
        Revision.objects.create(
            item=current, number=current.revision, fields=snapshot(current), author=user, note=note[:300]
        )
        if user is not None and current.state in (ContentItem.State.APPROVED, ContentItem.State.PUBLISHED):
            move(current, "edited_after_approval", user=user, reason="Edited after approval.")
    run_checks(current)
    return current


ITEMS = transitions.Workflow(
    "state",
    StateChange,
    "item",
    StudioError,
    lost_race="Someone else moved this item first (now {current}).",
    refused="An item that is {state} cannot {action}.",
)


def move(
    item: ContentItem, name: str, *, user=None, reason: str = "", data: dict | None = None
) -> ContentItem:
    return ITEMS.move(item, name, user=user, reason=reason, data=data)


# The moves that say "this text is finished": refused while the model is still writing it.
# Requesting changes is not: a reviewer may say what to change while a part is rewritten.
NEED_FINISHED_TEXT = ("submit", "approve", "publish")

TRANSITIONS = {
    ContentItem.State.IN_REVIEW: "submit",
    ContentItem.State.CHANGES_REQUESTED: "request_changes",
    ContentItem.State.APPROVED: "approve",
    ContentItem.State.PUBLISHED: "publish",
}


def transition(
    item: ContentItem, to: str, *, user, reason: str = "", overrides: dict[str, str] | None = None
):
    """Move the item to `to`. Only a named person with the editor role moves items (generation
    and automation never approve); requesting changes needs a reason; approving needs every
    blocking check passing or overridden with a written reason. Submitting, approving and
    publishing wait while the model writes the article or rewrites a part of it (a 409
    `still_writing` that says what it is writing); nothing changes."""
    if user is None or not has_role(user, EDITOR):
        raise StudioError("forbidden", "Only an editor can move content items.", 403)
    name = TRANSITIONS.get(to)
    if name is None:
        raise StudioError("bad_request", f"'to' must be one of: {', '.join(TRANSITIONS)}.", 400)
    reason = (reason or "").strip()
    if name == "request_changes" and not reason:
        raise StudioError("bad_request", "Say what should change (a reason is required).", 400)
    with transaction.atomic():
        item = ContentItem.objects.select_for_update().get(pk=item.pk)
        if not can_proceed(getattr(item, name)):
            state = item.state.replace("_", " ")
            raise StudioError("conflict", f"An item that is {state} cannot move to {to.replace('_', ' ')}.")
        if name in NEED_FINISHED_TEXT and (writing := still_writing(item)):
            raise StudioError("still_writing", writing, 409)
        if name == "approve":
            _record_overrides(item, overrides or {}, user)
            blocking = [
                c
                for c in item.checks
                if c.get("status") == "fail" and c.get("blocking") and c["id"] not in item.overrides
            ]
            if blocking:
                names = ", ".join(c["label"] for c in blocking)
                raise StudioError(
                    "checks_failing",
                    f"Failing checks block approval: {names}. "
                    "Fix them, or override each with a written reason.",
                )
            item.approved_by, item.approved_at = user, timezone.now()
        item = move(item, name, user=user, reason=reason, data={"revision": item.revision})
        if name == "publish":
            queue_delivery(item)  # posted to the CMS after this commits
        return item


def _record_overrides(item: ContentItem, overrides: dict[str, str], user) -> None:
    if not isinstance(overrides, dict):
        raise StudioError("bad_request", "overrides must map check ids to reasons.", 400)
    known = {c["id"] for c in item.checks}
    for check_id, why in overrides.items():
        if check_id not in known:
            raise StudioError("bad_request", f"No check called {check_id}.", 400)
        if not isinstance(why, str) or not why.strip():
            raise StudioError("bad_request", f"Overriding {check_id} needs a written reason.", 400)
        item.overrides[check_id] = {
            "reason": why.strip()[:1000],
            "user": user.get_username(),
            "at": timezone.now().isoformat(),
        }
    if overrides:
        ContentItem.objects.filter(pk=item.pk).update(overrides=item.overrides)


def add_comment(item: ContentItem, user, anchor: Any, text: Any) -> Comment:
    anchors = {"title", "meta_title", "meta_description", "slug", "intro", "faq", "image_prompts"}
    anchors |= {s["id"] for s in item.sections}
    if anchor not in anchors:
        raise StudioError("bad_request", "Comments are anchored to a section id or a field name.", 400)
    if not isinstance(text, str) or not text.strip() or len(text) > 5000:
        raise StudioError("bad_request", "A comment is text of 1 to 5000 characters.", 400)
    return Comment.objects.create(item=item, anchor=anchor, author=user, text=text.strip())


def assign(item: ContentItem, user, assignee, due_date) -> ContentItem:
    """Set who reviews the item and by when, recorded in its history."""
    if assignee is not None and not has_role(assignee, EDITOR):
        raise StudioError("unknown_editor", "Items are assigned to editors only.", 400)
    with transaction.atomic():
        ContentItem.objects.filter(pk=item.pk).update(
            assignee=assignee, due_date=due_date, updated_at=timezone.now()
        )
        StateChange.objects.create(
            item=item,
            action="assigned",
            from_state=item.state,
            to_state=item.state,
            user=user,
            data={
                "assignee": assignee.get_username() if assignee else None,
                "due_date": str(due_date or "") or None,
            },
        )
    item.refresh_from_db()
    return item


def resolve_comment(item: ContentItem, comment_id: Any, *, resolved: bool = True) -> Comment:
    try:
        comment = item.comments.get(pk=int(comment_id))
    except (TypeError, ValueError, Comment.DoesNotExist) as exc:
        raise StudioError("not_found", "No such comment on this item.", 404) from exc
    Comment.objects.filter(pk=comment.pk).update(resolved=resolved)
    comment.resolved = resolved
    return comment

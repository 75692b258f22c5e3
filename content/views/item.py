"""One item's page: its edit form with the search-result preview beside the meta fields,
regeneration, comments, the article's preview as it will be published, checks and overrides,
the fact check, state moves (waiting while the model writes), assignment, image candidates,
revisions and history. The forms post to content/views/actions.py."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET
from django_fsm import can_proceed

from content import present, snippet
from content.checks.facts import claims
from content.errors import ExportError
from content.models import ContentItem, StudioSettings
from content.regeneration import IN_FLIGHT, part_label
from content.views.base import (
    EXPORTABLE,
    STATE_LABELS,
    editor_required,
    editors,
    get_item_or_404,
    with_dates,
)

MOVES = ("submit", "request_changes", "approve", "publish")  # the FSM transitions the page offers
EXPORT_FORMATS = ("md", "html", "json", "zip")
# Comment anchors shown beside their field in the edit form (sections show their own).
FIELD_ANCHORS = ("title", "meta_title", "meta_description", "slug", "intro", "faq")
# The edit form's one-value fields (sections and the FAQ are lists of them).
SCALAR_FIELDS = ("title", "meta_title", "meta_description", "slug", "intro")


def edit_values(item: ContentItem) -> dict[str, Any]:
    return {
        "revision": item.revision,
        **{name: getattr(item, name) for name in SCALAR_FIELDS},
        "sections": [
            {"id": s.get("id", ""), "heading": s.get("heading", ""), "text": s.get("text", "")}
            for s in item.sections
            if isinstance(s, dict)
        ],
        "faq": [
            {"question": f.get("question", ""), "answer": f.get("answer", "")}
            for f in item.faq
            if isinstance(f, dict)
        ],
    }


def _diff_lines(diff: str) -> list[dict[str, str]]:
    """A unified diff's lines with a kind each, for the + / - styling."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "ctx")
        lines.append({"kind": kind, "text": line})
    return lines


def _gallery(item: ContentItem, data: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict]]:
    """Candidates per image prompt, and those whose prompt no longer exists."""
    slots = [
        {"slot": n, "number": n + 1, "spec": spec if isinstance(spec, dict) else {}, "images": []}
        for n, spec in enumerate(item.image_prompts)
    ]
    orphans = []
    for image in data:
        (slots[image["slot"]]["images"] if image["slot"] < len(slots) else orphans).append(image)
    return slots, orphans


def fact_check(item: ContentItem) -> dict[str, Any]:
    """The fact-check panel: each claim of the text (ContentItem.support, kept by
    content/quality.py after every generation, save and regeneration) with the part it is in,
    and its source passage ([n], the document's title, the sentence) or why it has none."""
    titles = {r.get("chunk"): r.get("title") for r in item.retrieved if isinstance(r, dict)}
    rows = [
        {
            "part": part_label(item, str(r.get("part") or "")),
            "text": str(r.get("text") or ""),
            "supported": r.get("verdict") == "supported",
            "source": r.get("source"),
            "title": titles.get(r.get("chunk")) or "(untitled)",
            "evidence": str(r.get("evidence") or ""),
            "unknown": [str(u) for u in r.get("unknown") or []],
        }
        for r in claims(item.support or [])
    ]
    return {"claims": rows, "unsupported": sum(not row["supported"] for row in rows)}


def preview(item: ContentItem) -> dict[str, Any]:
    """The preview card: the saved article as it will be published, and the image prompts no
    chosen image fills yet (the published article goes without them)."""
    try:
        # nh3-sanitised markup from the export's own renderer (Markdown with raw HTML off, links
        # http(s) or relative), not text: safe to insert as HTML.
        html: SafeString | None = mark_safe(present.article_preview(item))  # noqa: S308
        error = None
    except ExportError as exc:
        html, error = None, exc.message
    chosen = set(item.images.filter(chosen=True, status="done").values_list("slot", flat=True))
    return {
        "html": html,
        "error": error,
        "unfilled": [n + 1 for n in range(len(item.image_prompts)) if n not in chosen],
    }


def search_snippet(request: HttpRequest, edit: dict[str, Any]) -> dict[str, Any]:
    """The search-result preview of the edit form's values (the posted ones when a save was
    refused), the limits studio.js redraws it with, and the workspace's site settings."""
    site = StudioSettings.current()
    shown = snippet.snippet(
        title=edit["title"],
        meta_title=edit["meta_title"],
        meta_description=edit["meta_description"],
        slug=edit["slug"],
        site_name=site.site_name,
        site_url=site.site_url,
    )
    can_change = request.user.has_perm("content.change_studiosettings")
    return {
        "shown": shown,
        "site_name": site.site_name,
        "site_url": site.site_url or snippet.PLACEHOLDER_SITE,
        "site_url_set": bool(site.site_url),
        "limits": {
            "title_chars": snippet.TITLE_CHARS,
            "title_px": snippet.TITLE_PX,
            "description_chars": snippet.DESCRIPTION_CHARS,
        },
        "settings_url": reverse("admin:content_studiosettings_changelist") if can_change else None,
    }


def item_response(
    request: HttpRequest,
    item: ContentItem,
    *,
    edit: dict | None = None,
    conflict: bool = False,
    status: int = 200,
) -> HttpResponse:
    data = with_dates(present.detail(item))
    edit = edit or edit_values(item)
    comments: dict[str, list] = defaultdict(list)
    for c in data["comments"]:
        comments[c["anchor"]].append(c)
    # Comment forms sit outside the edit form (forms do not nest); each textarea joins its own
    # form by the `form` attribute, whose id must be a safe one, not the section's id.
    sections = [
        {**s, "dom": f"s{n}", "comments": comments.pop(s["id"], [])} for n, s in enumerate(edit["sections"])
    ]
    field_comments = {anchor: comments.pop(anchor, []) for anchor in FIELD_ANCHORS}
    comment_forms = [{"anchor": a, "dom": a} for a in FIELD_ANCHORS]
    comment_forms += [{"anchor": s["id"], "dom": s["dom"]} for s in sections]
    checks = [
        {**c, "override": item.overrides.get(c.get("id")), "failing": c.get("status") == "fail"}
        for c in data["checks"]
        if isinstance(c, dict)
    ]
    slots, orphans = _gallery(item, data["images"])
    revisions = [
        {**r, "first": n == 0, "changed": [(name, _diff_lines(diff)) for name, diff in r["changed"].items()]}
        for n, r in enumerate(data["revisions"])
    ][::-1]  # newest first
    can = {name: can_proceed(getattr(item, name)) for name in MOVES}
    latest = data["regeneration"]  # the latest "regenerate one part", if any
    regenerating = bool(latest and latest["status"] in IN_FLIGHT)
    generating = item.generation in (ContentItem.Generation.QUEUED, ContentItem.Generation.RUNNING)
    return render(
        request,
        "studio/item.html",
        {
            "d": data,
            "style_guide": item.brief.style_guide,  # not in present.detail
            "state_label": STATE_LABELS.get(item.state, item.state),
            "generating": generating,
            "generated": item.generation == ContentItem.Generation.DONE,
            "regenerating": regenerating,
            # Why submitting, approving and publishing wait (the buttons are disabled), or None.
            "writing": data["still_writing"],
            "preview": None if generating else preview(item),
            "snippet": search_snippet(request, edit),
            "edit": edit,
            "conflict": conflict,
            # Not "sections": base.html's header menu takes that name ({% nav_sections as sections %}).
            "edit_sections": sections,
            "field_comments": field_comments,
            "comment_forms": comment_forms,
            "other_comments": [c for anchored in comments.values() for c in anchored],
            "checks": checks,
            "facts": fact_check(item),
            "needs_overrides": can["approve"] and any(c["failing"] and not c["override"] for c in checks),
            "can": can,
            "slots": slots,
            "orphan_images": orphans,
            "revisions": revisions,
            "editors": editors(),
            "exports": EXPORT_FORMATS if item.state in EXPORTABLE else (),
        },
        status=status,
    )


@require_GET
@editor_required
def item_page(request: HttpRequest, item_id: int) -> HttpResponse:
    return item_response(request, get_item_or_404(item_id))

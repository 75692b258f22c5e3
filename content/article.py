"""An item's text as one article: the snapshot a Revision keeps, the Markdown body, the fields the
SEO checks and the exports read, and what changed between two snapshots. Functions of the item's
fields only (no queries), so the review, the checks, the presenters and the exports share them.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from content.models import TEXT_FIELDS, ContentItem


def snapshot(item: ContentItem) -> dict[str, Any]:
    return {name: getattr(item, name) for name in TEXT_FIELDS}


def compose_body(item: ContentItem | dict) -> str:
    """The article as Markdown: the H1, the introduction, then each section under its H2."""
    get = item.get if isinstance(item, dict) else lambda name, default=None: getattr(item, name, default)
    parts = [f"# {get('title', '') or ''}".rstrip()]
    if get("intro"):
        parts.append(get("intro").strip())
    for section in get("sections") or []:
        parts.append(f"## {section.get('heading', '')}".rstrip())
        if section.get("text"):
            parts.append(section["text"].strip())
    return "\n\n".join(parts) + "\n"


def article_fields(item: ContentItem) -> dict[str, Any]:
    """The published text as the SEO checks (content/quality.py) and the exports
    (content/present.py's export_item) read it: the body as Markdown, the FAQ as pairs."""
    return {
        "title": item.title,
        "meta_title": item.meta_title,
        "meta_description": item.meta_description,
        "slug": item.slug,
        "body": compose_body(item),
        "faq": item.faq,
    }


def text_parts(item: ContentItem) -> list[tuple[str, str]]:
    """(part, text) of every part of the article that states facts, as the fact check names
    them: "meta_description", "intro", each section's id, "faq-1", "faq-2"… (the answers; a
    question asks, it does not claim)."""
    parts = [("meta_description", item.meta_description or ""), ("intro", item.intro or "")]
    parts += [
        (str(s.get("id") or ""), str(s.get("text") or "")) for s in item.sections or [] if isinstance(s, dict)
    ]
    parts += [
        (f"faq-{n}", str(pair.get("answer") or ""))
        for n, pair in enumerate(item.faq or [], start=1)
        if isinstance(pair, dict)
    ]
    return [(part, text) for part, text in parts if text.strip()]


def field_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, str]:
    """Per field, a unified diff of what changed between two snapshots (only changed fields)."""
    out = {}
    for name in TEXT_FIELDS:
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        lines_a = (a if isinstance(a, str) else json.dumps(a, indent=1, ensure_ascii=False)).splitlines()
        lines_b = (b if isinstance(b, str) else json.dumps(b, indent=1, ensure_ascii=False)).splitlines()
        out[name] = "\n".join(difflib.unified_diff(lines_a, lines_b, "before", "after", lineterm=""))
    return out

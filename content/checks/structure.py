"""The article's structure (one H1, heading order, image alt text, internal links) and its
similarity to existing content (near duplicates)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from urllib.parse import urlsplit

from content.checks.config import SimilarFn
from content.checks.reading import Article, Report, num


def _url_key(url: str) -> tuple[str, str]:
    parts = urlsplit(url.strip())
    return parts.netloc.lower().removeprefix("www."), parts.path.rstrip("/") or "/"


def structure(a: Article, existing_pages: Sequence[tuple[str, str]], report: Report) -> None:
    add, headings = report.add, a.doc.headings
    h1s = sum(level == 1 for level, _ in headings)
    if h1s == 1:
        add("single_h1", "pass", "The body has exactly one H1, the title.", h1s)
    elif h1s == 0:
        add("single_h1", "fail", "The body has no H1; it needs exactly one, the title.", h1s)
    else:
        add(
            "single_h1",
            "fail",
            f"The body has {h1s} H1 headings; keep one for the title, use H2 below it.",
            h1s,
        )

    pairs = pairwise(headings)
    skips = [(prev, level, text) for (prev, _), (level, text) in pairs if level > prev + 1]
    if not skips:
        add("heading_order", "pass", "Headings go down one level at a time.", 0)
    else:
        prev, level, text = skips[0]
        reason = (
            f'The heading "{text}" is an H{level} right after an H{prev} '
            f"(skips in all: {len(skips)}); don't skip heading levels."
        )
        add("heading_order", "fail", reason, len(skips))

    missing = sum(not alt.strip() for alt in a.image_alts)
    if not a.image_alts:
        add("image_alt_text", "pass", "There are no images, so no alt text is needed.", 0)
    elif missing:
        reason = f"Images without alt text: {missing} of {len(a.image_alts)}; every image needs one."
        add("image_alt_text", "fail", reason, missing)
    else:
        add("image_alt_text", "pass", f"Every image has alt text ({len(a.image_alts)} checked).", 0)

    # Internal: a relative link to a page (not "#section" alone, not mailto:), or an absolute
    # one whose host and path (any scheme, "www.", trailing slash) match an existing page's URL.
    known = {_url_key(url) for _, url in existing_pages}
    internal = 0
    for href in a.doc.links:
        parts = urlsplit(href.strip())
        relative = not parts.scheme and not parts.netloc and bool(parts.path)
        absolute = parts.scheme in ("http", "https", "") and bool(parts.netloc)
        internal += relative or (absolute and _url_key(href) in known)
    if internal:
        add("internal_links", "pass", f"Links to the site's own pages: {internal}.", internal)
    else:
        example = f', e.g. to "{existing_pages[0][0]}" ({existing_pages[0][1]})' if existing_pages else ""
        reason = f"The article has no links to the site's own pages; add at least one{example}."
        add("internal_links", "warn", reason, 0)


def near_duplicate(a: Article, similar: SimilarFn | None, report: Report) -> None:
    add, config = report.add, report.config
    warn, fail = num(config.duplicate_warn_similarity), num(config.duplicate_fail_similarity)
    text = "\n\n".join(t for t in (a.title, a.doc.text) if t)
    if similar is None:
        add("near_duplicate", "warn", "Similarity to existing content was not checked.", None)
        return
    if not text:
        add("near_duplicate", "warn", "The article has no text to compare with existing content.", None)
        return
    matches = similar(text)
    if not matches:
        add("near_duplicate", "pass", "No similar existing content was found.", 0.0)
        return
    title, score = max(matches, key=lambda match: match[1])
    score = round(float(score), 3)
    measured = f'The closest existing content, "{title}", has a similarity of {num(score, 3)}'
    if score >= config.duplicate_fail_similarity:
        add("near_duplicate", "fail", f"{measured}; {fail} or more counts as a duplicate.", score)
    elif score >= config.duplicate_warn_similarity:
        add(
            "near_duplicate",
            "warn",
            f"{measured}; from {warn} make sure the article adds something new.",
            score,
        )
    else:
        add("near_duplicate", "pass", f"{measured}, below the {warn} warning level.", score)

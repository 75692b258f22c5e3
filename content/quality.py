"""Running the SEO and quality checks (content/checks/) on an item: its fields as the checks
read them, the site's existing pages for internal links (the knowledge base's documents and the
studio's approved and published items), near-duplicate detection by embedding similarity
against both, and the fact check (each sentence against the passages the article was written
from), kept in ContentItem.support."""

from __future__ import annotations

from typing import Any

import numpy as np

from answers.prompts import Source
from answers.provenance import given_sources
from answers.support import check, records
from answers.verification import split_sentences
from content.article import article_fields, compose_body, text_parts
from content.checks import CheckConfig
from content.checks import run_checks as _run
from content.models import ContentItem
from inference.services import get_embedder
from retrieval.models import Document
from retrieval.search import search

MAX_COMPARED_ITEMS = 200  # the newest approved/published items the near-duplicate check reads


def existing_pages(item: ContentItem) -> list[tuple[str, str]]:
    pages = [
        (title, url or f"/kb/{pk}/")
        for pk, title, url in Document.objects.filter(
            collection=item.brief.collection, status="ready"
        ).values_list("pk", "title", "url")
    ]
    others = ContentItem.objects.filter(
        state__in=[ContentItem.State.APPROVED, ContentItem.State.PUBLISHED]
    ).exclude(pk=item.pk)
    pages += [(title, f"/{slug}/") for title, slug in others.values_list("title", "slug") if slug]
    return pages


def similar_to(item: ContentItem):
    """(title, cosine) of the existing content nearest to a text: the knowledge base's best
    passages (dense scores) and the studio's other approved or published items."""

    def similar(text: str) -> list[tuple[str, float]]:
        found = [
            (hit.title, float(hit.dense_score))
            for hit in search(text[:4000], collection=item.brief.collection, k=3, mode="dense")
            if hit.dense_score is not None
        ]
        others = list(
            ContentItem.objects.filter(state__in=[ContentItem.State.APPROVED, ContentItem.State.PUBLISHED])
            .exclude(pk=item.pk)
            .order_by("-updated_at")[:MAX_COMPARED_ITEMS]
        )
        if others:
            vectors = get_embedder().embed([text[:4000]] + [compose_body(o)[:4000] for o in others])
            scores = vectors[1:] @ vectors[0]
            found += [(o.title, float(s)) for o, s in zip(others, np.asarray(scores), strict=True)]
        return sorted(found, key=lambda pair: -pair[1])

    return similar


def fact_check(item: ContentItem) -> list[dict[str, Any]]:
    """Each sentence of the article's text parts (article.text_parts) checked against the
    passages it was written from, stored on the item (answers/support.py's records, each with
    its "part"). A part whose sentences are those already checked keeps its records: after a
    save or a regeneration only the changed parts cost an embedder call each (the part's
    sentences and the sources' in one batch). The editor's topic and keyphrase count as known
    words: they are the brief's, not claims the sources must hold."""
    before: dict[str, list[dict[str, Any]]] = {}
    for record in item.support or []:
        if isinstance(record, dict):
            before.setdefault(str(record.get("part")), []).append(record)
    support: list[dict[str, Any]] = []
    sources: list[Source] | None = None  # read once, when a part needs checking
    for part, text in text_parts(item):
        kept = before.get(part)
        if kept and [r.get("text") for r in kept] == split_sentences(text):
            support += kept
            continue
        if sources is None:
            sources = given_sources(item.retrieved)
        verification = check(text, sources, question=f"{item.brief.topic}\n{item.brief.keyphrase}")
        support += [{**record, "part": part} for record in records(verification, sources)]
    if support != item.support:
        ContentItem.objects.filter(pk=item.pk).update(support=support)
    item.support = support
    return support


def run_checks(item: ContentItem) -> list[dict]:
    """Fact-check and check the item as saved now and store the results on it."""
    fields = {
        **article_fields(item),
        "images": [{"alt": p.get("alt", ""), "prompt": p.get("prompt", "")} for p in item.image_prompts],
    }
    results = [
        r.to_dict()
        for r in _run(
            fields,
            item.brief.keyphrase,
            item.brief.language,
            config=CheckConfig.from_settings(),
            existing_pages=existing_pages(item),
            similar=similar_to(item),
            support=fact_check(item),
        )
    ]
    ContentItem.objects.filter(pk=item.pk).update(checks=results)
    item.checks = results
    return results

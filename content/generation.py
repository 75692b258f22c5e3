"""Brief → article, step by step with the chat model: outline, introduction, each section, meta
description, FAQ, image prompts. Grounded in the brief's reference documents (or the knowledge
base's best passages for the topic). Each step updates the item's progress and tells the studio
page live (channel group `content.<id>`); a failed step leaves what was written and says which.

Every part is written by the one answer path (answers/), like a chat answer: passages that carry
instructions are screened out, personal data in the brief is redacted in the prompt and restored
in the text, the prompt is fitted to the model's budget, the output guard drops images, links
no source names and recitations of the instructions, a stalled or endless model is cut off (the
step fails), and the item's provenance has the shared shape. Sentences in which the model talks
about the article or its task ("Here is the section:") are stripped (content/checks/self_talk.py),
and the checks that run after writing include the fact check (content/quality.py): each claim
against the passages the prompts carried, stored in ContentItem.support.

An editor can regenerate one part (a section, the introduction, the meta description, the FAQ)
without touching the rest: `regenerate_part`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from slugify import slugify

from answers.fallback import load_generator
from answers.generate import Spec, complete_all
from answers.grounding import Ask, compose, retrieve
from answers.prompts import ARTICLE_INSTRUCTIONS, ARTICLE_TEMPLATE_VERSION
from answers.provenance import Provenance
from content.article import snapshot
from content.checks.self_talk import strip_self_talk
from content.errors import StudioError
from content.images import queue_images
from content.models import ContentItem, Revision, StudioSettings
from content.quality import run_checks
from content.review import save_fields
from retrieval.search import Hit

log = logging.getLogger(__name__)

WORDS = {"short": 400, "medium": 800, "long": 1400}
SECTIONS = {"short": 3, "medium": 4, "long": 6}


def _notify(item: ContentItem) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    payload = {"type": "content.progress", "item": item.pk, "progress": item.progress, "step": item.step}
    try:
        async_to_sync(layer.group_send)(f"content.{item.pk}", payload)
    except Exception:  # noqa: BLE001 - progress is a courtesy; the row holds the truth
        log.debug("event=content_progress_not_sent item=%s", item.pk)


def _progress(item: ContentItem, progress: int, step: str, **fields: Any) -> None:
    item.progress, item.step = progress, step
    for name, value in fields.items():
        setattr(item, name, value)
    ContentItem.objects.filter(pk=item.pk).update(
        progress=progress, step=step, updated_at=timezone.now(), **fields
    )
    _notify(item)


class _Writer:
    """The model calls of one generation, sharing the sources and recording their provenance."""

    def __init__(self, item: ContentItem, *, fresh: bool = False) -> None:
        # fresh: sample (a new seed) so a regenerated part differs from the greedy first text; a
        # first generation is greedy and repeatable.
        self.item, self.brief, self.fresh = item, item.brief, fresh
        self.generator = load_generator()
        brief = self.brief
        # Articles are published: the knowledge base's best passages are drawn from public
        # documents only. A private document an editor names as a reference is their choice
        # (and the article is reviewed before it is published).
        self.retrieval = retrieve(
            Ask(
                f"{brief.topic}\n{brief.keyphrase}",
                collection=brief.collection,
                k=settings.CONTENT_RETRIEVAL_K,
                documents=frozenset(brief.references.values_list("pk", flat=True)),
            )
        )
        self.model_key: str | None = None
        self.retrieved: dict[int, dict[str, Any]] = {}  # by chunk: what any prompt carried or left out

    @property
    def hits(self) -> list[Hit]:
        """The passages the article's prompts draw on (screened)."""
        return list(self.retrieval.kept)

    def _brief(self) -> str:
        brief = self.brief
        guide = f"\nStyle guide:\n{brief.style_guide[:2000]}" if brief.style_guide else ""
        return (
            f"Brief: topic {brief.topic!r}; keyphrase {brief.keyphrase!r}; "
            f"audience {brief.audience or 'general readers'}; tone {brief.tone or 'friendly, clear'}; "
            f"language {brief.language}.{guide}"
        )

    def ask(self, task: str, max_tokens: int) -> str:
        return self.ask_all([(task, max_tokens)])[0]

    def ask_all(self, tasks: list[tuple[str, int]]) -> list[str]:
        """Several independent requests at once: the engine decodes them in one batch (about
        5x the tokens/s of one stream at 8, benchmarks/RESULTS.md), so an article's sections
        cost little more than one. Answers in the order asked; a model failure (busy, down,
        stalled, too slow) raises, failing the step."""
        requests = [
            (
                compose(
                    f"{self._brief()}\n\nTask: {task}",
                    self.retrieval,
                    instructions=ARTICLE_INSTRUCTIONS,
                    count_tokens=self.generator.count_tokens,
                ),
                Spec.background(ARTICLE_INSTRUCTIONS, ARTICLE_TEMPLATE_VERSION, max_tokens, fresh=self.fresh),
            )
            for task, max_tokens in tasks
        ]
        answers = async_to_sync(complete_all)(self.generator, requests)
        for answer in answers:
            if answer.failure is not None:
                raise answer.failure
            provenance = answer.provenance()
            self.model_key = provenance.model_key or self.model_key
            for record in provenance.retrieved:
                self.retrieved.setdefault(record["chunk"], record)
        # Stripped, not regenerated: the framing ("Here is the section:", "The article will
        # feature…") carries nothing a reader needs, a first generation is greedy so asking again
        # gives the same text, and each retry costs a whole model call per part. What is left
        # is still fact-checked; a part left empty shows as such and the editor regenerates it.
        return [strip_self_talk(answer.text) for answer in answers]

    def provenance(self) -> Provenance:
        """The article's: the model that wrote it, the template, every chunk its prompts carried."""
        return Provenance(self.model_key, ARTICLE_TEMPLATE_VERSION, tuple(self.retrieved.values()))


_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*(.+?)\s*$")


def _lines(text: str, most: int, longest: int = 120) -> list[str]:
    """List items the model wrote, one per line, without bullets, numbers or Markdown marks."""
    found = []
    for line in text.splitlines():
        match = _LIST_ITEM.match(line)
        if not match:
            continue
        value = match.group(1).strip(" #*_\"'`:")
        if 3 <= len(value) <= longest and value.lower() not in (v.lower() for v in found):
            found.append(value)
    return found[:most]


def outline(writer: _Writer, count: int) -> tuple[list[str], bool]:
    """Section headings from the model; (headings, True) when it gave fewer usable lines than
    asked and the brief's own words filled in (recorded in the revision note)."""
    keyphrase = writer.brief.keyphrase
    text = writer.ask(
        f"List {count} short section headings for an article about {writer.brief.topic!r}. "
        "One heading per line, nothing else.",
        max_tokens=settings.CONTENT_OUTLINE_TOKENS,
    )
    headings = _lines(text, count, longest=80)
    if len(headings) >= count:
        return headings, False
    # Too few usable lines: the brief's own words fill the rest, so the article keeps its length.
    fallback = [
        f"What is {keyphrase}?",
        f"How {keyphrase} works",
        f"Tips for {keyphrase}",
        f"Common {keyphrase} mistakes",
        f"When to get help with {keyphrase}",
        f"{keyphrase}: next steps",
    ]
    return (headings + [h for h in fallback if h not in headings])[:count], True


def _section_task(writer: _Writer, heading: str, words: int) -> tuple[str, int]:
    return (
        f"Write the section {heading!r} of the article about {writer.brief.topic!r} in about {words} words, "
        f"as plain paragraphs (no heading). Use the keyphrase {writer.brief.keyphrase!r} once if it fits.",
        min(settings.CONTENT_SECTION_TOKENS, int(words * 1.6) + 16),
    )


def section_text(writer: _Writer, heading: str, words: int) -> str:
    return writer.ask(*_section_task(writer, heading, words))


def section_texts(writer: _Writer, headings: list[str], words: int) -> list[str]:
    return writer.ask_all([_section_task(writer, heading, words) for heading in headings])


def intro_text(writer: _Writer) -> str:
    return writer.ask(
        f"Write a two-sentence introduction for an article about {writer.brief.topic!r}. "
        f"The first sentence must contain the phrase {writer.brief.keyphrase!r}.",
        max_tokens=settings.CONTENT_SECTION_TOKENS,
    )


def meta_description(writer: _Writer) -> str:
    text = writer.ask(
        f"Write one sentence under 150 characters that describes an article about {writer.brief.topic!r} "
        f"and contains {writer.brief.keyphrase!r}.",
        max_tokens=60,
    )
    text = " ".join(text.split())
    return text if len(text) <= 156 else text[:155].rsplit(" ", 1)[0] + "…"


def faq(writer: _Writer) -> list[dict[str, str]]:
    questions = [
        q if q.endswith("?") else q + "?"
        for q in _lines(
            writer.ask(
                f"List 3 questions customers ask about {writer.brief.topic!r}. One question per line.",
                max_tokens=settings.CONTENT_OUTLINE_TOKENS,
            ),
            3,
        )
    ]
    answers = writer.ask_all(
        [
            (f"Answer in two sentences: {question}", settings.CONTENT_SECTION_TOKENS // 2)
            for question in questions
        ]
    )
    return [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)]


def meta_title(topic: str, site_name: str | None = None) -> str:
    """The SEO title: the topic, then " | " and the workspace's site name (StudioSettings,
    kept by admins) when it has one. Read when an article is written: changing the site name
    later leaves existing items' titles as they are."""
    site = " ".join((StudioSettings.current().site_name if site_name is None else site_name).split())
    return (f"{topic} | {site}" if site else topic)[:300]


def image_prompts(brief) -> list[dict[str, str]]:
    """Prompts for a social card and an inline picture. Built from the brief, not the model: a
    135M model's image prompts add nothing a template does not."""
    style = brief.tone or "friendly"
    return [
        {
            "prompt": f"{brief.topic}, {style} editorial illustration, clean composition, soft light",
            "negative_prompt": "text, watermark, logo, blurry, distorted",
            "alt": f"Illustration for {brief.keyphrase}"[:300],
            "size": "social",
        },
        {
            "prompt": f"{brief.keyphrase}, {style} photo-style scene, natural colours",
            "negative_prompt": "text, watermark, logo, blurry, distorted",
            "alt": f"{brief.keyphrase} in everyday use"[:300],
            "size": "landscape",
        },
    ]


def generate(item_id: int) -> ContentItem | None:
    """The whole article for a new item (a Celery task body). Safe to run twice: an item that
    is already generated or being generated is left alone."""
    with transaction.atomic():
        taken = ContentItem.objects.filter(pk=item_id, generation=ContentItem.Generation.QUEUED).update(
            generation=ContentItem.Generation.RUNNING, step="starting"
        )
    if not taken:
        return None
    item = ContentItem.objects.select_related("brief").get(pk=item_id)
    brief = item.brief
    try:
        writer = _Writer(item)
        _progress(item, 5, "outline")
        count = SECTIONS.get(brief.length, 4)
        headings, fallback = outline(writer, count)
        _progress(item, 15, "introduction", title=brief.topic[:300])
        intro = intro_text(writer)
        per_section = WORDS.get(brief.length, 800) // (count + 1)
        _progress(item, 25, f"{len(headings)} sections, written together")
        texts = section_texts(writer, headings, per_section)
        sections = [
            {"id": f"s{n}", "heading": heading, "text": text}
            for n, (heading, text) in enumerate(zip(headings, texts, strict=True), start=1)
        ]
        ContentItem.objects.filter(pk=item.pk).update(sections=sections, intro=intro)
        _progress(item, 75, "meta description")
        description = meta_description(writer)
        _progress(item, 85, "FAQ")
        questions = faq(writer)
        fields = {
            "title": brief.topic[:300],
            "meta_title": meta_title(brief.topic),
            "meta_description": description,
            "slug": slugify(brief.keyphrase or brief.topic, allow_unicode=True)[:200],
            "intro": intro,
            "sections": sections,
            "faq": questions,
            "image_prompts": image_prompts(brief) if brief.with_images else [],
        }
        with transaction.atomic():
            for name, value in fields.items():
                setattr(item, name, value)
            item.revision += 1
            provenance = writer.provenance().fields()
            item.model_version = provenance["model_version"]
            item.prompt_template = provenance["prompt_template"]
            item.retrieved = provenance["retrieved"]
            ContentItem.objects.filter(pk=item.pk).update(
                revision=item.revision,
                model_version=item.model_version,
                prompt_template=item.prompt_template,
                retrieved=item.retrieved,
                **fields,
            )
            note = "generated" + (
                " (some headings from the brief: the model gave too few)" if fallback else ""
            )
            Revision.objects.create(item=item, number=item.revision, fields=snapshot(item), note=note)
        run_checks(item)
        _progress(item, 100, "done", generation=ContentItem.Generation.DONE)
        if brief.with_images:
            queue_images(item)
    except Exception as exc:
        log.exception("event=content_generation_failed item=%s step=%s", item.pk, item.step)
        _progress(
            item,
            item.progress,
            item.step,
            generation=ContentItem.Generation.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        return item
    log.info("event=content_generated item=%s revision=%s", item.pk, item.revision)
    return item


PARTS = ("intro", "meta_description", "faq")


def regenerate_part(item: ContentItem, part: str, *, user) -> ContentItem:
    """A new text for one part (`intro`, `meta_description`, `faq` or a section id), the rest
    untouched, saved as a new revision by `user` (the model wrote it; the editor asked)."""
    item = ContentItem.objects.select_related("brief").get(pk=item.pk)  # the text as saved now
    base = item.revision
    writer = _Writer(item, fresh=True)
    if part == "intro":
        changes: dict[str, Any] = {"intro": intro_text(writer)}
    elif part == "meta_description":
        changes = {"meta_description": meta_description(writer)}
    elif part == "faq":
        changes = {"faq": faq(writer)}
    else:
        sections = [dict(s) for s in item.sections]
        target = next((s for s in sections if s["id"] == part), None)
        if target is None:
            raise StudioError(
                "bad_request", f"No part called {part!r}: use {', '.join(PARTS)} or a section id.", 400
            )
        words = WORDS.get(item.brief.length, 800) // (len(sections) + 1)
        target["text"] = section_text(writer, target["heading"], words)
        changes = {"sections": sections}
    # From the revision it was written against: an edit saved meanwhile is a conflict, not lost.
    return save_fields(item, changes, user=user, base_revision=base, note=f"regenerated {part}")

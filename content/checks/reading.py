"""Reading an article for the checks: the Markdown body parsed (CommonMark, raw HTML off: a
`<script>` tag is text), the fields trimmed, the keyphrase as a pattern, and the report the
checks add their results to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from markdown_it import MarkdownIt
from textstat.textstat import textstatistics

from content.checks.config import LABELS, CheckConfig, CheckResult, Status, Value

_markdown = MarkdownIt("commonmark", {"html": False})


@dataclass
class Doc:
    headings: list[tuple[int, str]]  # (level, text) in order, H1 included
    paragraphs: list[str]  # list items' paragraphs included
    intro: str | None  # the first paragraph with text after the first H1
    links: list[str]  # hrefs
    image_alts: list[str]  # alt text of Markdown images in the body
    text: str  # everything but the H1: subheadings and paragraphs


def _inline_text(token: Any, links: list[str], alts: list[str]) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "link_open":
            links.append(str(child.attrGet("href") or ""))
        elif child.type == "image":
            alts.append(child.content)
    return "".join(parts)


def read_markdown(body: str) -> Doc:
    tokens = _markdown.parse(body)
    headings: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    links: list[str] = []
    alts: list[str] = []
    text_parts: list[str] = []
    intro: str | None = None
    first_paragraph: str | None = None
    seen_h1 = False
    for previous, token in pairwise(tokens):
        if token.type != "inline":
            continue
        text = _inline_text(token, links, alts).strip()
        if previous.type == "heading_open":
            level = int(previous.tag[1:])
            headings.append((level, text))
            seen_h1 = seen_h1 or level == 1
            if level > 1:
                text_parts.append(text)
        elif previous.type == "paragraph_open":
            paragraphs.append(text)
            text_parts.append(text)
            if text and first_paragraph is None:
                first_paragraph = text
            if text and seen_h1 and intro is None:
                intro = text
    return Doc(headings, paragraphs, intro or first_paragraph, links, alts, "\n\n".join(text_parts))


def keyphrase_pattern(keyphrase: str) -> re.Pattern[str] | None:
    """Whole words, any case, each word with or without a plural "s"; None without words.

    Spaces, hyphens, slashes and apostrophes between the keyphrase's words match any run of
    them (not sentence or clause punctuation); other characters ("Node.js") match as written.
    """
    pieces = re.split(r"(\w+)", keyphrase.strip().lower())
    words, separators = pieces[1::2], pieces[2:-1:2]
    if not words:
        return None
    parts = []
    for word in words:
        base = word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
        parts.append(re.escape(base) + "s?")
    pattern = parts[0]
    for separator, part in zip(separators, parts[1:], strict=True):
        loose = not separator.strip(" \t-‐–/'’")
        pattern += (r"[^\w.!?;:,]+" if loose else re.escape(separator)) + part
    return re.compile(r"(?<!\w)" + pattern + r"(?!\w)", re.IGNORECASE)


def num(x: float, digits: int = 2) -> str:
    """3.0 -> "3", 4.125 -> "4.13": the measured values in reasons, without noise."""
    return f"{x:.{digits}f}".rstrip("0").rstrip(".")


@dataclass
class Article:
    title: str
    meta_title: str
    meta_description: str
    slug: str
    doc: Doc
    image_alts: list[str]  # the images field's and the body's Markdown images'
    lang: str  # ISO 639-1, "" when not given
    stats: textstatistics
    words: int  # in doc.text, counted by textstat

    @classmethod
    def read(cls, fields: Mapping[str, Any], language: str) -> Article:
        def field(name: str) -> str:
            return str(fields.get(name) or "").strip()

        doc = read_markdown(field("body"))
        lang = (language or "").strip().lower().replace("-", "_").split("_")[0]
        # An instance of our own: textstat's module-level one keeps the language in a global.
        stats = textstatistics()
        stats.set_lang(lang or "en")
        alts = [str((image or {}).get("alt") or "") for image in fields.get("images") or []]
        words = stats.lexicon_count(doc.text) if doc.text else 0
        return cls(
            field("title"), field("meta_title"), field("meta_description"), field("slug"),
            doc, alts + doc.image_alts, lang, stats, words,
        )  # fmt: skip


class Report:
    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self.results: list[CheckResult] = []

    def add(self, check_id: str, status: Status, reason: str, value: Value) -> None:
        blocking = check_id in self.config.blocking
        self.results.append(CheckResult(check_id, LABELS[check_id], status, reason, value, blocking))

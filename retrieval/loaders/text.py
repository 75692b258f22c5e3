"""Plain text: blank lines separate paragraphs; a short first line standing alone is the title."""

from __future__ import annotations

import re

from retrieval.loaders.base import Block, ParsedDocument, clean_lines, decode_text

KIND = "text"
SUFFIXES = frozenset({".txt"})
CONTENT_TYPES = frozenset({"text/plain"})

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_TITLE_MAX_CHARS = 100


def load(data: bytes, name: str) -> ParsedDocument:
    text = decode_text(data, name).replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [p for p in (clean_lines(p) for p in _PARAGRAPH_BREAK.split(text)) if p]
    title = ""
    # "Opening hours\n\nWe open at 9." reads as a title and a paragraph; a one-paragraph file
    # keeps its only line as text (the caller then names the document after the file).
    if len(paragraphs) > 1 and _looks_like_title(paragraphs[0]):
        title = paragraphs.pop(0)
    return ParsedDocument(title=title, blocks=[Block(text=p) for p in paragraphs], kind=KIND)


def _looks_like_title(paragraph: str) -> bool:
    return "\n" not in paragraph and len(paragraph) <= _TITLE_MAX_CHARS and not paragraph.endswith((".", ":"))

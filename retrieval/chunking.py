"""Structure-following chunking: Markdown headings give sections; paragraphs are packed into
chunks of about CHUNK_TOKENS tokens with CHUNK_OVERLAP_TOKENS of overlap inside a section.

Sizes are counted in word-piece-like units (words and punctuation), a close, dependency-free
proxy for the embedder's WordPiece tokens (all-MiniLM-L6-v2 truncates at 256 of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.text import slugify

_TOKEN = re.compile(r"\w+|[^\w\s]")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    section: str
    anchor: str
    token_count: int


def markdown_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match and len(match.group(1)) == 1:
            return match.group(2).strip()
    return fallback


def _sections(text: str, title: str) -> list[tuple[list[str], str, list[str]]]:
    """Split Markdown into (heading path, anchor, paragraphs), skipping fenced-code headings."""
    path: list[tuple[int, str]] = []
    sections: list[tuple[list[str], str, list[str]]] = [([title], "", [])]
    paragraph: list[str] = []
    in_fence = False

    def end_paragraph() -> None:
        if paragraph:
            sections[-1][2].append("\n".join(paragraph).strip())
            paragraph.clear()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            end_paragraph()
            level, heading = len(match.group(1)), match.group(2).strip()
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
            names = [h for _, h in path]
            if names[0] != title:
                names = [title, *names]
            sections.append((names, slugify(heading), []))
        elif line.strip():
            paragraph.append(line)
        else:
            end_paragraph()
    end_paragraph()
    return [s for s in sections if s[2]]


def _split_long(paragraph: str, size: int) -> list[str]:
    """Break a paragraph longer than `size` tokens at sentence ends, then at words."""
    pieces: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        while count_tokens(" ".join(words)) > size:
            take = max(1, len(words) // 2)
            while take > 1 and count_tokens(" ".join(words[:take])) > size:
                take //= 2
            pieces.append(" ".join(words[:take]))
            words = words[take:]
        sentence = " ".join(words)
        if current and count_tokens(" ".join([*current, sentence])) > size:
            pieces.append(" ".join(current))
            current = []
        if sentence:
            current.append(sentence)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_markdown(text: str, title: str, *, size: int = 200, overlap: int = 40) -> list[ChunkDraft]:
    drafts: list[ChunkDraft] = []
    for names, anchor, paragraphs in _sections(text, title):
        units: list[str] = []
        for paragraph in paragraphs:
            units.extend(_split_long(paragraph, size) if count_tokens(paragraph) > size else [paragraph])
        section = " > ".join(names)
        # Each chunk starts with its section path, so a passage like "Hold it for 15 seconds"
        # still says what it is about when retrieved (and embedded) on its own.
        current: list[str] = []
        for unit in units:
            if current and count_tokens("\n\n".join([*current, unit])) > size:
                drafts.append(_draft(section, anchor, current))
                current = _tail(current, overlap)
            current.append(unit)
        if current:
            drafts.append(_draft(section, anchor, current))
    return drafts


def _tail(units: list[str], overlap: int) -> list[str]:
    """The last paragraphs of a chunk that fit in `overlap` tokens, carried into the next."""
    kept: list[str] = []
    for unit in reversed(units):
        if count_tokens("\n\n".join([unit, *kept])) > overlap:
            break
        kept.insert(0, unit)
    return kept


def _draft(section: str, anchor: str, units: list[str]) -> ChunkDraft:
    body = "\n\n".join(units)
    text = f"{section}\n\n{body}"
    return ChunkDraft(text=text, section=section, anchor=anchor, token_count=count_tokens(text))

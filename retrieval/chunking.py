"""Structure-following chunking of parsed documents.

A chunk belongs to exactly one section path and one page: consecutive blocks that share both are
packed, paragraph by paragraph, into chunks of at most `size` tokens, and the next chunk of the
same section starts with up to `overlap` tokens of the previous one's end, so an answer that
straddles a boundary is still found whole in one of them. A paragraph longer than a chunk is
split at line breaks, then sentence ends, then words. FAQ pairs are one chunk each, as written.

Sizes are counted by default in word-piece-like units (words and punctuation), a close,
dependency-free proxy for the embedder's WordPiece tokens (all-MiniLM-L6-v2 truncates at 256).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from retrieval.loaders import Block, ParsedDocument
from retrieval.loaders.markdown import markdown_title, parse_markdown

__all__ = ["ChunkDraft", "chunk_document", "chunk_markdown", "count_tokens", "markdown_title"]

TokenCounter = Callable[[str], int]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_LINE_BREAK = re.compile(r"\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")
SECTION_MAX_CHARS = 500  # Chunk.section's column
ANCHOR_MAX_CHARS = 200  # Chunk.anchor's column


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


_proxy_count = count_tokens  # chunk_document's `count_tokens` argument shadows the name


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    section: str
    anchor: str
    token_count: int
    page: int | None = None
    kind: str = "text"


def chunk_document(
    doc: ParsedDocument, *, size: int = 200, overlap: int = 40, count_tokens: TokenCounter | None = None
) -> list[ChunkDraft]:
    """Chunks of a parsed document, in document order; the same input always gives the same chunks.

    `size` bounds each chunk's tokens including its leading section line (the embedder truncates
    what is longer, so a larger size loses text, while a smaller one gives more, less specific
    vectors); only an FAQ pair, or a section path longer than half of `size`, can exceed it.
    `overlap` repeats that many tokens (at most; whole sentences) at the start of the next chunk
    of a section: more recall at boundaries for more chunks to embed and store.
    """
    if size < 1 or overlap < 0:
        raise ValueError("size must be positive and overlap not negative")
    count = count_tokens or _proxy_count
    drafts: list[ChunkDraft] = []
    for group in _sections(doc.blocks):
        first = group[0]
        section = _cap(" > ".join((doc.title, *first.headings)), SECTION_MAX_CHARS)
        # An FAQ pair is one question and its whole answer: split, half an answer misleads.
        texts = [b.text for b in group]
        bodies = texts if first.kind == "faq" else _pack(texts, section, size, overlap, count)
        for body in bodies:
            text = f"{section}\n\n{body}"
            drafts.append(
                ChunkDraft(
                    text=text,
                    section=section,
                    anchor=first.anchor[:ANCHOR_MAX_CHARS],
                    token_count=count(text),
                    page=first.page,
                    kind=first.kind,
                )
            )
    return drafts


def chunk_markdown(text: str, title: str, *, size: int = 200, overlap: int = 40) -> list[ChunkDraft]:
    """Chunks of a Markdown text under a given title (kept for callers that predate the loaders)."""
    _, blocks = parse_markdown(text, title)
    return chunk_document(
        ParsedDocument(title=title, blocks=blocks, kind="markdown"), size=size, overlap=overlap
    )


def _sections(blocks: Sequence[Block]) -> Iterator[list[Block]]:
    """Runs of consecutive text blocks under the same headings, anchor and page; each FAQ block
    alone (pairs are never merged)."""
    group: list[Block] = []
    for block in blocks:
        if group and (block.kind == "faq" or group[0].kind == "faq" or _place(block) != _place(group[0])):
            yield group
            group = []
        group.append(block)
    if group:
        yield group


def _place(block: Block) -> tuple[tuple[str, ...], str, int | None]:
    return block.headings, block.anchor, block.page


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _pack(texts: Sequence[str], section: str, size: int, overlap: int, count: TokenCounter) -> list[str]:
    """Bodies of one section's chunks: paragraphs joined by blank lines, each within budget."""
    # The section line rides along in every chunk; a very long path still leaves half for text.
    budget = max(size - count(f"{section}\n\n"), size // 2, 1)
    overlap = min(overlap, budget // 2)
    bodies: list[str] = []
    current: list[str] = []
    for unit in (piece for text in texts for piece in _units(text, budget, overlap, count)):
        if current and count("\n\n".join([*current, unit])) > budget:
            bodies.append("\n\n".join(current))
            carried = _tail(current, overlap, count)
            current = carried if carried and count("\n\n".join([*carried, unit])) <= budget else []
        current.append(unit)
    if current:
        bodies.append("\n\n".join(current))
    return bodies


def _units(text: str, budget: int, overlap: int, count: TokenCounter) -> list[str]:
    if count(text) <= budget:
        return [text]
    # Pieces of a long paragraph leave room for the overlap carried in front of each of them.
    return _split(text, budget - overlap, count)


def _split(text: str, budget: int, count: TokenCounter) -> list[str]:
    """A paragraph as pieces of at most `budget` tokens: at line breaks (lists, tables), then
    sentence ends, then words; neighbouring pieces are joined again while they fit."""
    if count(text) <= budget:
        return [text]
    for pattern, joiner in ((_LINE_BREAK, "\n"), (_SENTENCE_END, " ")):
        parts = [part.strip() for part in pattern.split(text) if part.strip()]
        if len(parts) > 1:
            pieces = [piece for part in parts for piece in _split(part, budget, count)]
            return list(_regroup(pieces, joiner, budget, count))
    return _split_words(text, budget, count)


def _regroup(pieces: Sequence[str], joiner: str, budget: int, count: TokenCounter) -> Iterator[str]:
    current: list[str] = []
    for piece in pieces:
        if current and count(joiner.join([*current, piece])) > budget:
            yield joiner.join(current)
            current = []
        current.append(piece)
    if current:
        yield joiner.join(current)


def _split_words(text: str, budget: int, count: TokenCounter) -> list[str]:
    """The longest word prefixes that fit, found by bisection. Every word is at least one token,
    so a piece never holds more than `budget` words: that bounds the search on huge paragraphs."""
    words = text.split()
    pieces: list[str] = []
    start = 0
    while start < len(words):
        window = words[start : start + budget + 1]
        low, high = 1, len(window)  # the answer is the largest n in [1, len] with a fitting prefix
        while low < high:
            mid = (low + high + 1) // 2
            if count(" ".join(window[:mid])) <= budget:
                low = mid
            else:
                high = mid - 1
        piece = " ".join(window[:low])
        if low == 1 and count(piece) > budget:  # one "word" longer than a chunk (a URL, a hash)
            pieces.extend(_split_chars(piece, budget, count))
        else:
            pieces.append(piece)
        start += low
    return pieces


def _split_chars(word: str, budget: int, count: TokenCounter) -> list[str]:
    # Rare enough that a simple linear scan is fine; always makes progress (at least a character).
    pieces: list[str] = []
    start = 0
    while start < len(word):
        end = start + 1
        while end < len(word) and count(word[start : end + 1]) <= budget:
            end += 1
        pieces.append(word[start:end])
        start = end
    return pieces


def _tail(units: Sequence[str], overlap: int, count: TokenCounter) -> list[str]:
    """The end of a chunk to repeat at the start of the next: whole paragraphs while they fit,
    then the last whole sentences of the paragraph before them (never a sentence fragment)."""
    kept: list[str] = []
    for unit in reversed(units):
        if count("\n\n".join([unit, *kept])) <= overlap:
            kept.insert(0, unit)
            continue
        sentences = [s for s in _SENTENCE_END.split(unit) if s.strip()]
        tail: list[str] = []
        for sentence in reversed(sentences[1:]):  # the whole paragraph did not fit
            if count("\n\n".join([" ".join([sentence, *tail]), *kept])) > overlap:
                break
            tail.insert(0, sentence.strip())
        if tail:
            kept.insert(0, " ".join(tail))
        break
    return kept

"""What the sources support: the verifier (answers/verification.py) applied to what the answer
path gave the model, and the source sentences that answer a question best (quotes), which a
reader is shown when the model's own words cannot be trusted.

`check` needs the embedder (a call per output: the output's sentences and the sources' sentences
in one batch, ~20-50 ms on this machine for a chat answer over three chunks); `records` turns its
result into the stored shape (Message.support, Draft.support, ContentItem.support):

    {"text", "verdict": "supported" | "unsupported" | "neutral", "score", "chunk", "source": n,
     "evidence": the source sentence, "unknown": [facts found in neither sources nor question]}
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from answers.prompts import Source
from answers.verification import _STOP_WORDS, Embed, SourceText, Verification, split_sentences, verify
from inference.services import get_embedder


def source_texts(sources: Sequence[Source]) -> list[SourceText]:
    """Every chunk the model was given, as the verifier reads them."""
    return [SourceText(hit.chunk_id, hit.text) for source in sources for hit in source.hits]


def check(
    text: str, sources: Sequence[Source], *, question: str = "", embed: Embed | None = None
) -> Verification:
    """Each sentence of `text` checked against `sources` and the customer's `question`
    (ANSWER_SUPPORT_THRESHOLD: the similarity that counts as support). `embed`: the embedder's
    `embed` unless given (a `remembering` one when the same sources are checked many times)."""
    return verify(
        text,
        source_texts(sources),
        question=question,
        embed=embed or get_embedder().embed,
        threshold=settings.ANSWER_SUPPORT_THRESHOLD,
    )


def remembering(embed: Embed) -> Embed:
    """`embed` that keeps every text's vector, for checking an answer sentence by sentence: the
    sources' sentences are embedded once per answer instead of once per sentence."""
    seen: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in seen))
        if missing:
            seen.update(zip(missing, embed(missing), strict=True))
        return np.stack([seen[t] for t in texts]) if texts else embed([])

    return cached


def records(verification: Verification, sources: Sequence[Source]) -> list[dict[str, Any]]:
    """The verification in its stored shape (see the module docstring), each sentence with the
    number of the source that supports it."""
    numbered = {hit.chunk_id: source.n for source in sources for hit in source.hits}
    return [
        {
            **sentence.record(),
            # Sources are numbered from 1; a 0 (answers/provenance.given_sources) names none.
            "source": (numbered.get(sentence.chunk) or None) if sentence.chunk is not None else None,
            "evidence": sentence.evidence,
        }
        for sentence in verification.sentences
    ]


# --- Quotes -----------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")
_QUESTION_WORDS = frozenset(
    "what which who whom whose how when where why does did do is are was were many much".split()
)
# A chunk's text opens with its place in the document ("Title > Section") on a line of its own,
# and Markdown headings may remain: labels, not sentences a reader can be quoted. (A list line
# without a full stop, "- Fibre 100: £30 a month", is content and stays.)
_PLACE = re.compile(r"\A[^\n.!?]*\n")
_HEADING = re.compile(r"^\s*#+\s.*$", re.M)


# Steps and bullet lists are quoted whole: "3. Press and hold it for 15 seconds" means little
# without the steps before it.
_LIST = re.compile(r"(?:^[ \t]*(?:\d{1,2}[.)]|[-*•])[ \t]+.+(?:\n|$))+", re.M)


# A table (Markdown, or as the loaders flatten one: cells between "|"): a header line, then rows.
_TABLE = re.compile(r"(?:^[^\n]*\|[^\n]*(?:\n|$)){2,}", re.M)
_RULE = re.compile(r"^[\s|:\-]+$")


def _rows(table: str) -> list[str]:
    """Each row of a table as a sentence that names its columns: "Plan: Gigabit 1000; Download:
    1000 Mbps; Monthly price: £50.", so a quoted row says what its numbers are."""
    lines = [line for line in table.splitlines() if line.strip() and not _RULE.match(line)]
    header = [cell.strip() for cell in lines[0].strip().strip("|").split("|")]
    rows = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        pairs = [
            f"{name}: {cell}" if name else cell for name, cell in zip(header, cells, strict=False) if cell
        ]
        rows.append("; ".join(pairs) + ".")
    return rows


def _pieces(body: str) -> list[str]:
    """Sentences, with each list as one piece (steps mean little alone)."""
    units: list[str] = []
    at = 0
    for match in _LIST.finditer(body):
        units += split_sentences(body[at : match.start()])
        units.append(" ".join(match.group().split()))
        at = match.end()
    return units + split_sentences(body[at:])


def _units(text: str) -> list[str]:
    """What a chunk can be quoted by, in its order: its sentences, each list as one piece, each
    table row as a sentence naming its columns."""
    body = _HEADING.sub("", _PLACE.sub("", text.lstrip(), count=1))
    units: list[str] = []
    at = 0
    for match in _TABLE.finditer(body):
        units += _pieces(body[at : match.start()]) + _rows(match.group())
        at = match.end()
    return [u for u in units + _pieces(body[at:]) if len(u.split()) >= 3]


def _terms(text: str) -> list[str]:
    """Lower-cased words without stop words, a plural's "s" dropped (cheap, language-neutral)."""
    words = (w.lower() for w in _WORD.findall(text))
    kept = (w for w in words if w not in _STOP_WORDS and w not in _QUESTION_WORDS)
    return [re.sub(r"(?<=\w\w\w)s$", "", w) for w in kept]


@dataclass(frozen=True)
class Quote:
    """A source sentence offered as (part of) an answer."""

    text: str
    source: int  # the source's number [n]
    chunk: int
    score: float  # similarity (cosine) plus the share of the question's words it holds
    coverage: float  # that share: the question's words (weighted by rarity) found in the sentence
    following: str = ""  # the next sentence (or list) of the same passage, if any


def quotes(question: str, sources: Sequence[Source], *, limit: int = 2) -> list[Quote]:
    """The source sentences that answer `question` best, best first, at most `limit`.

    A sentence scores its embedding similarity to the question plus the share of the question's
    words it contains, each weighted by how rare it is among the candidate sentences (idf), so
    "1971" or "Cook" counts for more than "problem". A lookup question's answer usually sits in
    the sentence that repeats its rare words; the embedding breaks ties and finds paraphrases.
    Cost: one embedder batch of the question and every sentence of the sources."""
    unique: dict[str, tuple[int, int, str, str]] = {}
    for source in sources:
        for hit in source.hits:
            units = _units(hit.text)
            for i, unit in enumerate(units):
                following = units[i + 1] if i + 1 < len(units) else ""
                unique.setdefault(unit, (source.n, hit.chunk_id, unit, following))
    candidates = list(unique.values())
    if not candidates:
        return []
    sentence_terms = [set(_terms(text)) for _, _, text, _ in candidates]
    frequency = Counter(term for terms in sentence_terms for term in terms)
    wanted = set(_terms(question))
    weight = {term: math.log(1 + len(candidates) / (1 + frequency[term])) for term in wanted}
    total = sum(weight.values()) or 1.0
    vectors = get_embedder().embed([question, *(text for _, _, text, _ in candidates)])
    similarity = vectors[1:] @ vectors[0]
    scored = []
    rows = zip(candidates, sentence_terms, np.asarray(similarity), strict=True)
    for (n, chunk, text, following), terms, cosine in rows:
        coverage = sum(weight[t] for t in wanted & terms) / total
        scored.append(Quote(text, n, chunk, float(cosine) + coverage, coverage, following))
    scored.sort(key=lambda q: q.score, reverse=True)
    return scored[:limit]

"""Curated answers win: a question that matches a pinned answer's question or one of its
paraphrases (cosine similarity of their embeddings at or above CHAT_PINNED_THRESHOLD) gets that
answer as written, with its source, and the model is not asked."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings

from answers.models import PinnedAnswer
from inference.services import get_embedder

# Embeddings of each pinned answer's phrasings, by id, with the updated_at they were made from:
# a question costs one embedding, not one per pinned phrasing.
_vectors: dict[int, tuple[datetime, np.ndarray]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class PinnedMatch:
    answer: PinnedAnswer
    score: float  # cosine similarity of the question to the closest phrasing

    def citations(self) -> list[dict[str, Any]]:
        """The pinned answer's source in the citation shape of a generated answer."""
        pinned = self.answer
        if not (pinned.source_title or pinned.source_url):
            return []
        title = pinned.source_title or pinned.source_url
        return [{"n": 1, "title": title, "url": pinned.source_url, "section": "", "snippet": ""}]

    def retrieved(self) -> list[dict[str, Any]]:
        """Its provenance, in place of retrieved chunks."""
        return [{"pinned": self.answer.pk, "score": round(self.score, 4)}]

    @property
    def template(self) -> str:
        return f"pinned:{self.answer.pk}"


def find_pinned(question: str, collection: str) -> PinnedMatch | None:
    """The active pinned answer of `collection` closest to `question`, if close enough."""
    pinned = list(PinnedAnswer.objects.filter(active=True, collection=collection))
    if not pinned:
        return None
    embedder = get_embedder()
    with _lock:
        for answer in pinned:
            cached = _vectors.get(answer.pk)
            if cached is None or cached[0] != answer.updated_at:
                _vectors[answer.pk] = (answer.updated_at, embedder.embed(answer.phrasings()))  # (p, dim)
        vectors = {answer.pk: _vectors[answer.pk][1] for answer in pinned}
    query = embedder.embed([question])[0]  # (dim,), L2-normalised like the phrasings
    best, best_score = None, -1.0
    for answer in pinned:
        score = float((vectors[answer.pk] @ query).max())
        if score > best_score:
            best, best_score = answer, score
    if best is not None and best_score >= settings.CHAT_PINNED_THRESHOLD:
        return PinnedMatch(best, best_score)
    return None

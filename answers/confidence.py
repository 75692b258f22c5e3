"""How far to trust an output, from what the answer path saw: how related the best source the
model was given is (embedding cosine), and whether the model said it does not know."""

from __future__ import annotations

from collections.abc import Iterable

from answers.prompts import Source
from retrieval.search import Hit

_DOES_NOT_KNOW = ("do not know", "don't know", "cannot answer", "can't answer", "not sure", "no information")


def relevance(hits: Iterable[Hit]) -> float | None:
    """The best embedding similarity (cosine) among `hits`; None when none has one (no hits,
    or only a keyword retriever consulted)."""
    dense = [h.dense_score for h in hits if h.dense_score is not None]
    return max(dense) if dense else None


def source_relevance(sources: Iterable[Source]) -> float:
    """The best similarity among the chunks the model was given; 0.0 when there were none."""
    return relevance(hit for source in sources for hit in source.hits) or 0.0


def says_it_does_not_know(answer: str) -> bool:
    """Whether the model said it does not know (the prompts tell it to, rather than guess)."""
    lowered = answer.lower()
    return any(phrase in lowered for phrase in _DOES_NOT_KNOW)


def offers_person(answer: str, sources: list[Source]) -> bool:
    """Whether to offer a person under this answer: nothing relevant was given to the model, it
    wrote nothing, or it said it does not know."""
    return not sources or not answer or says_it_does_not_know(answer)

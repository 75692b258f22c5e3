"""The first half of the answer path: what the model will be given.

`retrieve` looks for a curated answer (when asked to), searches the knowledge base and screens
the passages (answers/guard.py: passages that address the model are kept out and recorded);
`compose` redacts the customer's words (core/redaction.py) and fits the prompt to the model's
token budget. Both are synchronous (database, search, spaCy): call them off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from answers.confidence import relevance
from answers.guard import screen_hits
from answers.pinned import PinnedMatch, find_pinned
from answers.prompts import Source, fit_answer_messages, redact_turns
from inference.base import ChatMessage
from retrieval.search import Hit, search

log = logging.getLogger(__name__)

Turns = tuple[tuple[str, str], ...]  # (role, text): "user" for the customer, "assistant" for us


@dataclass(frozen=True)
class Ask:
    """What to retrieve for. Everything that reaches a customer or a published page searches
    public documents only; `documents` (an article brief's references) narrows the search to
    those documents, private ones included: the editor named them."""

    query: str
    collection: str = "default"
    k: int = 3
    documents: frozenset[int] = frozenset()
    pinned: bool = False  # look for a curated answer first (answers/pinned.py)
    pinned_text: str | None = None  # what to match pinned answers against (default: query)


@dataclass(frozen=True)
class Retrieval:
    pinned: PinnedMatch | None = None  # a curated answer: nothing was searched
    hits: tuple[Hit, ...] = ()  # as retrieved, best first
    kept: tuple[Hit, ...] = ()  # those that may go into a prompt
    excluded: tuple[Hit, ...] = ()  # those kept out for carrying instructions

    @property
    def relevance(self) -> float | None:
        """The best embedding similarity of the retrieved passages (see confidence.relevance)."""
        return relevance(self.hits)


def retrieve(ask: Ask) -> Retrieval:
    """A curated answer when `ask.pinned` finds one; else the passages, screened."""
    if ask.pinned:
        match = find_pinned(ask.pinned_text or ask.query, ask.collection)
        if match is not None:
            return Retrieval(pinned=match)
    if ask.documents:
        wider = search(ask.query, collection=ask.collection, k=ask.k * 3, public_only=False)
        hits = [h for h in wider if h.document_id in ask.documents][: ask.k]
    else:
        hits = search(ask.query, collection=ask.collection, k=ask.k, public_only=True)
    kept, excluded = screen_hits(hits)
    if excluded:
        log.warning(
            "event=passages_excluded reason=instructions chunks=%s",
            ",".join(str(h.chunk_id) for h in excluded),
        )
    return Retrieval(hits=tuple(hits), kept=tuple(kept), excluded=tuple(excluded))


@dataclass(frozen=True)
class Prompt:
    """A prompt ready for the model: the messages, the sources actually in them, and the mapping
    that turns the placeholders the model saw back into the customer's values."""

    messages: list[ChatMessage]
    sources: list[Source]
    excluded: tuple[Hit, ...] = ()
    mapping: dict[str, str] = field(default_factory=dict)


def compose(
    question: str,
    retrieval: Retrieval,
    *,
    instructions: str,
    count_tokens: Callable[[str], int],
    budget: int | None = None,
    history: Turns = (),
    known_names: tuple[str, ...] = (),
) -> Prompt:
    """The prompt for `question` over the retrieval's kept passages: the customer's words (the
    question and the history) redacted where the admin has it on, then trimmed to `budget`
    tokens (INFERENCE_MAX_INPUT_TOKENS unless given; fit_answer_messages: oldest history first,
    then the lowest-ranked chunks)."""
    redacted, turns, mapping = redact_turns(question, list(history), known_names=known_names)
    messages, sources = fit_answer_messages(
        redacted,
        list(retrieval.kept),
        turns,
        count_tokens=count_tokens,
        budget=settings.INFERENCE_MAX_INPUT_TOKENS if budget is None else budget,
        instructions=instructions,
    )
    return Prompt(
        [ChatMessage(role=m["role"], content=m["content"]) for m in messages],
        sources,
        retrieval.excluded,
        mapping,
    )

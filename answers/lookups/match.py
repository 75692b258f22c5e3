"""Which action a question asks for: the enabled action (of the question's knowledge base, or
of every one) with an example question closest to it, by the cosine similarity of their
embeddings (as answers/pinned.py matches pinned answers), at or above ACTIONS_MATCH_THRESHOLD.

A value shaped like one of the action's parameters is evidence too: the question is also
compared with its values replaced by the parameters' labels ("What is the status of ZX1234?"
as "What is the status of your order number?"), and the bar is then
ACTIONS_MATCH_THRESHOLD_WITH_VALUE. all-MiniLM-L6-v2 against "Where is my order? / What is the
status of my order? / Has my parcel shipped yet? / When will my order arrive?": "What is the
status of ZX1234?" 0.38 as typed, 0.84 labelled; "Can you check order ZX1234 for me?" 0.49 /
0.65; "ZX1234" alone 0.26 / 0.70; while "How long does delivery take?" scores 0.64 and "How do
I return an order?" 0.61, with no value (tests/test_actions.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db.models import Q

from answers.lookups.models import Action
from answers.lookups.params import Parameter
from inference.services import get_embedder

# Embeddings of each action's examples, by id, with the updated_at they were made from.
_vectors: dict[int, tuple[datetime, np.ndarray]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ActionMatch:
    action: Action
    score: float


def candidates(collection: str | None) -> list[Action]:
    actions = Action.objects.filter(enabled=True)
    if collection is not None:
        actions = actions.filter(Q(collection="") | Q(collection=collection))
    return [a for a in actions if a.example_list()]


def find_action(question: str, collection: str | None) -> ActionMatch | None:
    """The closest action to `question`, if close enough; None when none is."""
    actions = candidates(collection)
    if not actions:
        return None
    embedder = get_embedder()
    with _lock:
        for action in actions:
            cached = _vectors.get(action.pk)
            if cached is None or cached[0] != action.updated_at:
                _vectors[action.pk] = (action.updated_at, embedder.embed(action.example_list()))  # (e, dim)
        vectors = {action.pk: _vectors[action.pk][1] for action in actions}
    labelled = {action.pk: _labelled(question, action.parameter_list()) for action in actions}
    texts = [question, *sorted({text for text in labelled.values() if text is not None})]
    queries = dict(zip(texts, embedder.embed(texts), strict=True))  # each (dim,), L2-normalised
    best: ActionMatch | None = None
    for action in actions:
        score = float((vectors[action.pk] @ queries[question]).max())
        bar = settings.ACTIONS_MATCH_THRESHOLD
        text = labelled[action.pk]
        if text is not None:
            score = max(score, float((vectors[action.pk] @ queries[text]).max()))
            bar = settings.ACTIONS_MATCH_THRESHOLD_WITH_VALUE
        if score >= bar and (best is None or score > best.score):
            best = ActionMatch(action, score)
    return best


def _labelled(question: str, parameters: list[Parameter]) -> str | None:
    """`question` with each parameter value in it replaced by the parameter's label; None when
    it holds none."""
    text = question
    for parameter in parameters:
        value = parameter.find(text)
        if value is not None:
            text = text.replace(value, parameter.label)
    return None if text == question else text

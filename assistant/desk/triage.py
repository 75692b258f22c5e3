"""Triage: a category and a priority for each ticket from labelled example messages in
embedding space, and its language, each with a confidence and the reasons behind it.

A label's score is the mean similarity of its two examples nearest to the mail (`TOP`); the
confidence is a softmax over the labels' scores. Why this method: the labels and their examples
live in the admin (TriageLabel), so a team changes what the desk sorts into by editing examples,
with no training run, and the decision explains itself (the nearest labelled examples are stored
with it). benchmarks/triage_bench.py measures it on a held-out set beside the alternatives (the
labels' centroids, the single nearest example, the chat model asked to choose); see RESULTS.md.
Language comes from py3langid (a small bundled classifier), not from the embeddings, which are
English-only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from assistant.models import MailMessage, Ticket, TriageLabel
from inference.services import get_embedder
from retrieval.loaders.language import classify_language

log = logging.getLogger(__name__)

# Softmax temperature over cosine similarities: all-MiniLM's similarities between related
# sentences differ by a few hundredths, so without it every confidence would be ~1/n. 0.05 gave
# the best-calibrated confidences on the benchmark (mean confidence near the accuracy).
TEMPERATURE = 0.05
TOP = 2  # examples per label averaged into its score


@dataclass
class Decision:
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    # Every label's softmax share (what `confidence` is the top of): for ROC-AUC and explanations.
    probabilities: dict[str, float] = field(default_factory=dict)
    nearest: list[dict] = field(default_factory=list)  # the closest labelled examples: why


@dataclass
class _Centroids:
    names: list[str]
    matrix: np.ndarray  # (labels, dim), rows normalised
    examples: list[tuple[str, str]]  # (label, text)
    vectors: np.ndarray  # (examples, dim)


_cache: dict[tuple, _Centroids] = {}


def _centroids(kind: str) -> _Centroids | None:
    labels = [label for label in TriageLabel.objects.filter(kind=kind, active=True) if label.example_list()]
    if not labels:
        return None
    embedder = get_embedder()
    key = (kind, embedder.model_version, tuple((label.pk, label.updated_at) for label in labels))
    if key not in _cache:
        examples = [(label.name, text) for label in labels for text in label.example_list()]
        vectors = embedder.embed([text for _, text in examples])
        names = [label.name for label in labels]
        rows = []
        for name in names:
            mean = vectors[[i for i, (label, _) in enumerate(examples) if label == name]].mean(axis=0)
            rows.append(mean / (np.linalg.norm(mean) or 1.0))
        _cache.clear() if len(_cache) > 8 else None
        _cache[key] = _Centroids(names, np.stack(rows).astype(np.float32), examples, vectors)
    return _cache[key]


def label_scores(centroids: _Centroids, vector: np.ndarray, method: str = "top") -> np.ndarray:
    """Each label's similarity to the mail: "top" (the desk's), "centroid" or "nearest"."""
    if method == "centroid":
        return centroids.matrix @ vector
    similarities = centroids.vectors @ vector
    take = TOP if method == "top" else 1
    scores = []
    for name in centroids.names:
        own = np.sort(similarities[[i for i, (label, _) in enumerate(centroids.examples) if label == name]])
        scores.append(own[-take:].mean())
    return np.array(scores, dtype=np.float32)


def classify(kind: str, vector: np.ndarray, method: str = "top") -> Decision | None:
    """The best label of `kind` for an embedded text, or None when no labels are set up."""
    centroids = _centroids(kind)
    if centroids is None:
        return None
    scores = label_scores(centroids, vector, method)
    weights = np.exp((scores - scores.max()) / TEMPERATURE)
    probabilities = weights / weights.sum()
    best = int(probabilities.argmax())
    example_scores = centroids.vectors @ vector
    nearest = [
        {
            "label": centroids.examples[i][0],
            "text": centroids.examples[i][1],
            "score": round(float(example_scores[i]), 3),
        }
        for i in np.argsort(-example_scores)[:3]
    ]
    return Decision(
        label=centroids.names[best],
        confidence=round(float(probabilities[best]), 3),
        scores={name: round(float(s), 4) for name, s in zip(centroids.names, scores, strict=True)},
        probabilities={
            name: round(float(p), 4) for name, p in zip(centroids.names, probabilities, strict=True)
        },
        nearest=nearest,
    )


def detect_language(text: str) -> Decision:
    code, probability = classify_language(text)
    return Decision(label=code, confidence=round(probability, 3))


def triage_text(ticket: Ticket) -> str:
    """What the customer is asking: the subject and the new part of their latest mail (the
    first mail's words matter less once they have written again)."""
    latest = (
        ticket.messages.filter(direction=MailMessage.Direction.IN, automated="")
        .order_by("-created_at", "-id")
        .first()
    )
    body = (latest.reply_text or latest.text) if latest else ""
    return f"{ticket.subject}\n{body}".strip()[: settings.DESK_TRIAGE_MAX_CHARS]


def triage(ticket: Ticket) -> Ticket:
    """Set the ticket's category, priority and language with their confidences and reasons."""
    text = triage_text(ticket)
    vector = get_embedder().embed([text])[0]
    category, priority = classify("category", vector), classify("priority", vector)
    language = detect_language(text)
    reasons = {
        "text_chars": len(text),
        "method": f"mean of the {TOP} nearest examples",
        "temperature": TEMPERATURE,
    }
    updates: dict = {"triaged_at": timezone.now()}
    for name, decision in (("category", category), ("priority", priority), ("language", language)):
        if decision is None:
            continue
        updates[name] = decision.label
        updates[f"{name}_confidence"] = decision.confidence
        reasons[name] = {
            "scores": decision.scores,
            "probabilities": decision.probabilities,
            "nearest": decision.nearest,
        }
    updates["triage"] = reasons
    with transaction.atomic():  # fields only: the status is the review flow's to change
        Ticket.objects.filter(pk=ticket.pk).update(**updates)
    for name, value in updates.items():
        setattr(ticket, name, value)
    log.info(
        "event=ticket_triaged ticket=%s category=%s priority=%s language=%s",
        ticket.pk,
        ticket.category,
        ticket.priority,
        ticket.language,
    )
    return ticket

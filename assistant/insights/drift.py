"""Drift of what visitors ask: are this week's questions about something the last month's were not?

Each answered question's embedding is kept as a QuestionSample (`record_sample`, a Celery task
queued once the answer is stored, so the answer never waits for it). Daily, `check_drift`
compares, per collection, the questions of the last DRIFT_RECENT_DAYS with those of the
DRIFT_REFERENCE_DAYS before them:

- score: cosine distance between the two windows' centroids (0 = same average topic). With
  all-MiniLM, two random halves of 40 questions about one topic score 0.04 (p 0.54), 25 billing
  questions against 30 about the connection 0.76 (p 0.005, the least 200 permutations can say);
  the noise floor falls as the windows grow;
- p-value: a permutation test: window membership shuffled DRIFT_PERMUTATIONS times, p = the share
  of shuffles with a score at least the observed one (with the +1 correction, so never 0);
- alert: p < DRIFT_P_VALUE and score >= DRIFT_MIN_SCORE, and never with fewer than
  DRIFT_MIN_SAMPLES questions in either window (the report then says so, with null score).

Each report keeps the recent questions farthest from the reference centroid (ids, not copies of
the text) so an agent can read what changed. Why centroids and a permutation test: cheap (one
matrix product for all permutations), needs no model of the distribution, and its p-value is
exact for the windows compared; it sees a shift in the average topic, not a new small cluster
among unchanged ones (the farthest questions show those).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from assistant.models import DriftReport, Message, QuestionSample
from core.jobs import enqueue
from inference.services import get_embedder

log = logging.getLogger(__name__)

FARTHEST = 10  # recent questions listed in a report
SEED = 0  # the same samples give the same p-value on every run


def record_sample(answer_id: int) -> QuestionSample | None:
    """Embed and keep the visitor question that the assistant message `answer_id` answered.
    Idempotent (a redelivered task finds the sample there); None when the conversation was
    erased meanwhile or the answer has no question before it."""
    answer = Message.objects.select_related("conversation").filter(pk=answer_id).first()
    if answer is None:
        return None
    question = (
        Message.objects.filter(
            conversation_id=answer.conversation_id, role=Message.Role.USER, id__lt=answer.id
        )
        .order_by("-id")
        .first()
    )
    if question is None:
        return None
    existing = QuestionSample.objects.filter(question=question).first()
    if existing is not None:
        return existing
    embedder = get_embedder()
    # search() embeds a different text (a follow-up is searched with the previous question,
    # exclusions are stripped) and does not hand its vector out: the question is embedded here,
    # in the worker, after the answer.
    vector = embedder.embed([question.text])[0].astype(np.float32)  # (dim,)
    sample, _ = QuestionSample.objects.get_or_create(
        question=question,
        defaults={
            "conversation_id": answer.conversation_id,
            "collection": answer.conversation.collection,
            "embedding": vector.tobytes(),
            "embedding_model": embedder.model_version,
            "created_at": question.created_at,
        },
    )
    return sample


@receiver(post_save, sender=Message, dispatch_uid="assistant.insights.drift.sample_answered_question")
def _sample_answered_question(sender, instance: Message, created: bool, **kwargs) -> None:
    """Every stored assistant answer (generated, canned, pinned or fallback) queues its question
    for sampling once the answer's transaction commits, from whichever path stored it."""
    if not created or instance.role != Message.Role.ASSISTANT or kwargs.get("raw"):
        return
    answer_id = instance.pk

    def queue_sample() -> None:
        try:
            enqueue("assistant.record_question_sample", answer_id)
        except Exception:
            # A sample is worth less than the answer it follows: a broker hiccup loses one
            # question from the statistics, never the visitor's reply.
            log.warning("event=question_sample_not_queued answer=%s", answer_id, exc_info=True)

    transaction.on_commit(queue_sample)


def count_samples(cutoff: datetime) -> int:
    """How many question vectors `purge_samples(cutoff)` would delete."""
    return QuestionSample.objects.filter(created_at__lt=cutoff).count()


def purge_samples(cutoff: datetime) -> int:
    """Delete the question samples asked before `cutoff`; returns how many (the retention job)."""
    deleted, _ = QuestionSample.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine distance between the mean directions of two sets of unit vectors (n, dim)."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    denominator = float(np.linalg.norm(ca) * np.linalg.norm(cb)) or 1.0
    return float(1.0 - ca @ cb / denominator)


def permutation_test(
    recent: np.ndarray, reference: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(score, p-value) of recent (r, dim) against reference (f, dim). All permutations in one
    product: a (P, r + f) membership matrix times the pooled vectors gives every shuffled recent
    sum at once; the reference sum is the total minus it. Cost O(P * (r + f) * dim)."""
    observed = centroid_distance(recent, reference)
    pooled = np.concatenate([recent, reference]).astype(np.float64)  # (n, dim)
    n, r = len(pooled), len(recent)
    total = pooled.sum(axis=0)  # (dim,)
    membership = np.zeros((permutations, n))
    for row in membership:
        row[rng.permutation(n)[:r]] = 1.0
    recent_sums = membership @ pooled  # (P, dim)
    reference_sums = total - recent_sums
    cosines = np.einsum("pd,pd->p", recent_sums, reference_sums) / (
        np.linalg.norm(recent_sums, axis=1) * np.linalg.norm(reference_sums, axis=1) + 1e-12
    )
    shuffled = 1.0 - cosines  # (P,): scaling a sum does not change its direction
    p_value = (1 + int((shuffled >= observed - 1e-12).sum())) / (permutations + 1)
    return observed, p_value


def _window(collection: str, model: str, since: datetime, until: datetime, limit: int, rng):
    rows = list(
        QuestionSample.objects.filter(
            collection=collection, embedding_model=model, created_at__gte=since, created_at__lt=until
        ).values_list("id", "question_id", "conversation_id", "embedding")
    )
    count = len(rows)
    if count > limit:  # a uniform subsample keeps the test's cost bounded
        rows = [rows[i] for i in sorted(rng.choice(count, size=limit, replace=False))]
    return rows, count


def _matrix(rows, dim: int) -> np.ndarray:
    vectors = [np.frombuffer(bytes(row[3]), dtype=np.float32) for row in rows]
    vectors = [v for v in vectors if v.shape == (dim,)]
    return np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)


def check_collection(collection: str, now: datetime | None = None) -> DriftReport:
    """Compare the collection's recent window with its reference window and store the report."""
    now = now or timezone.now()
    recent_since = now - timedelta(days=settings.DRIFT_RECENT_DAYS)
    reference_since = recent_since - timedelta(days=settings.DRIFT_REFERENCE_DAYS)
    embedder = get_embedder()
    rng = np.random.default_rng(SEED)
    limit = settings.DRIFT_MAX_SAMPLES
    recent_rows, recent_count = _window(collection, embedder.model_version, recent_since, now, limit, rng)
    reference_rows, reference_count = _window(
        collection, embedder.model_version, reference_since, recent_since, limit, rng
    )
    report = DriftReport(
        collection=collection,
        created_at=now,
        recent_since=recent_since,
        reference_since=reference_since,
        until=now,
        recent_count=recent_count,
        reference_count=reference_count,
        embedding_model=embedder.model_version,
    )
    recent, reference = _matrix(recent_rows, embedder.dim), _matrix(reference_rows, embedder.dim)
    if min(len(recent), len(reference)) >= settings.DRIFT_MIN_SAMPLES:
        report.score, report.p_value = permutation_test(recent, reference, settings.DRIFT_PERMUTATIONS, rng)
        report.score = round(report.score, 6)
        report.permutations = settings.DRIFT_PERMUTATIONS
        report.alert = report.p_value < settings.DRIFT_P_VALUE and report.score >= settings.DRIFT_MIN_SCORE
        centre = reference.mean(axis=0)
        centre /= np.linalg.norm(centre) or 1.0
        distances = 1.0 - recent @ centre  # (r,)
        report.farthest = [
            {
                "sample": recent_rows[i][0],
                "question": recent_rows[i][1],
                "conversation": str(recent_rows[i][2]),
                "distance": round(float(distances[i]), 4),
            }
            for i in np.argsort(-distances)[:FARTHEST]
        ]
    report.save()
    log.info(
        "event=drift_checked collection=%s recent=%s reference=%s score=%s p=%s alert=%s",
        collection,
        recent_count,
        reference_count,
        report.score,
        report.p_value,
        report.alert,
    )
    return report


def check_drift(now: datetime | None = None) -> list[DriftReport]:
    """One report per collection that has questions in either window."""
    now = now or timezone.now()
    since = now - timedelta(days=settings.DRIFT_RECENT_DAYS + settings.DRIFT_REFERENCE_DAYS)
    collections = (
        QuestionSample.objects.filter(created_at__gte=since, created_at__lt=now)
        .values_list("collection", flat=True)
        .distinct()
        .order_by("collection")
    )
    return [check_collection(collection, now) for collection in collections]


def report_dict(report: DriftReport) -> dict[str, Any]:
    return {
        "id": report.pk,
        "collection": report.collection,
        "created_at": report.created_at.isoformat(),
        "recent": {"since": report.recent_since.isoformat(), "count": report.recent_count},
        "reference": {"since": report.reference_since.isoformat(), "count": report.reference_count},
        "until": report.until.isoformat(),
        "score": report.score,
        "p_value": report.p_value,
        "permutations": report.permutations,
        "alert": report.alert,
        "enough_data": report.score is not None,
        "embedding_model": report.embedding_model,
        "farthest": report.farthest,
    }


def latest_alerts() -> list[dict[str, Any]]:
    """The latest report of each collection that alerts, with its farthest questions' text (for
    the console banner; questions erased since are left out)."""
    latest: dict[str, DriftReport] = {}
    for report in DriftReport.objects.order_by("-created_at", "-id")[:200]:
        latest.setdefault(report.collection, report)
    alerts = []
    for report in latest.values():
        if not report.alert:
            continue
        ids = [item.get("question") for item in report.farthest if isinstance(item, dict)]
        texts = dict(
            Message.objects.filter(pk__in=[i for i in ids if isinstance(i, int)]).values_list("pk", "text")
        )
        questions = [
            {**item, "text": texts[item["question"]]}
            for item in report.farthest
            if isinstance(item, dict) and item.get("question") in texts
        ]
        alerts.append({"report": report, "questions": questions})
    return alerts

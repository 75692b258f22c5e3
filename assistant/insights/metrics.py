"""Prometheus metrics of the product, served at GET /metrics.

Two kinds, because the product runs as more than one process (the web server, the Celery worker,
more workers when scaled out) and each process has its own counters:

- Per-process instruments, observed where the work happens in the web process: answer latency
  and time to first token, tokens, answers by outcome, model errors by code, handoffs, feedback,
  the best retrieved passage's similarity. Sum them over processes in PromQL.
- Database aggregates computed at scrape time (`DatabaseCollector`), for what must be true
  across processes whichever one is scraped: the handoff and thumbs-down rates of the last 24 h,
  the latest drift report per collection, tickets awaiting review, and the triage confidences of
  the last 24 h (triage runs in the worker, which serves no /metrics). A handful of aggregate
  queries per scrape.

Stored answers are observed from the Message row's post_save, so every path that stores one
(generated, canned, pinned, fallback: assistant/chat/actions.py, assistant/chat/replies.py) is counted the
same way from the same fields the analytics read.

Access (`metrics_view`): with METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>`;
without it, loopback clients and signed-in admins and auditors. Anything else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
from collections.abc import Iterator, Sequence
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Q
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_fsm.signals import post_transition
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from assistant.models import Conversation, DriftReport, Feedback, Message, Ticket
from core.roles import ADMIN, AUDITOR, has_role

log = logging.getLogger(__name__)

# Our own registry: the inference server's metrics live in theirs, and nothing registered by a
# library on the default one leaks into ours.
REGISTRY = CollectorRegistry()

_SECONDS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)
ANSWER_SECONDS = Histogram(
    "parley_chat_answer_seconds",
    "From the visitor's question to the stored answer, by outcome",
    ["outcome"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
FIRST_TOKEN_SECONDS = Histogram(
    "parley_chat_first_token_seconds",
    "From the generation request to the model's first token (generated answers)",
    buckets=_SECONDS,
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter("parley_chat_prompt_tokens", "Prompt tokens of generated answers", registry=REGISTRY)
COMPLETION_TOKENS = Counter(
    "parley_chat_completion_tokens", "Completion tokens of generated answers", registry=REGISTRY
)
ANSWERS = Counter(
    "parley_chat_answers",
    "Answers stored, by outcome: generated, canned, pinned, fallback, cancelled",
    ["outcome"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "parley_chat_errors",
    "Answers the model failed (the visitor got the fallback), by error code",
    ["code"],
    registry=REGISTRY,
)
HANDOFFS = Counter("parley_chat_handoffs", "Conversations handed to a person", registry=REGISTRY)
FEEDBACK = Counter("parley_chat_feedback", "Visitor feedback on answers", ["value"], registry=REGISTRY)
RETRIEVAL_TOP_SCORE = Histogram(
    "parley_chat_retrieval_top_score",
    "Cosine similarity of the best retrieved passage to the question (dense retriever)",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    registry=REGISTRY,
)

CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def outcome(message: Message) -> str:
    if message.status == Message.Status.CANCELLED:
        return "cancelled"
    if message.status == Message.Status.FAILED:
        return "fallback"
    kind = message.prompt_template.split(":", 1)[0]
    return kind if kind in ("canned", "pinned") else "generated"


def observe_answer(message: Message) -> None:
    result = outcome(message)
    ANSWERS.labels(result).inc()
    if message.latency_ms is not None:
        ANSWER_SECONDS.labels(result).observe(message.latency_ms / 1000)
    if message.first_token_ms is not None:
        FIRST_TOKEN_SECONDS.observe(message.first_token_ms / 1000)
    if message.prompt_tokens:
        PROMPT_TOKENS.inc(message.prompt_tokens)
    if message.completion_tokens:
        COMPLETION_TOKENS.inc(message.completion_tokens)


def observe_retrieval(hits: Sequence) -> None:
    """The best dense similarity among a question's hits (fused scores are not comparable
    across queries, cosines are); nothing when nothing was retrieved."""
    dense = [h.dense_score for h in hits if h.dense_score is not None]
    if dense:
        RETRIEVAL_TOP_SCORE.observe(max(dense))


def count_error(code: str) -> None:
    ERRORS.labels(code).inc()


@receiver(post_save, sender=Message, dispatch_uid="assistant.insights.metrics.answer_stored")
def _answer_stored(sender, instance: Message, created: bool, **kwargs) -> None:
    if created and instance.role == Message.Role.ASSISTANT and not kwargs.get("raw"):
        observe_answer(instance)


@receiver(post_save, sender=Feedback, dispatch_uid="assistant.insights.metrics.feedback_stored")
def _feedback_stored(sender, instance: Feedback, created: bool, **kwargs) -> None:
    if created and not kwargs.get("raw"):
        FEEDBACK.labels("up" if instance.value > 0 else "down").inc()


@receiver(post_transition, sender=Conversation, dispatch_uid="assistant.insights.metrics.handoff")
def _handed_off(sender, instance, name: str, source, target, **kwargs) -> None:
    if name == "request_person" and source != target:  # asking again while queued is no new handoff
        HANDOFFS.inc()


class DatabaseCollector(Collector):
    """Cross-process figures, read from the database when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = self._read()
        except DatabaseError:
            log.warning("event=metrics_database_unreadable", exc_info=True)
            metrics = []
            up = 0.0
        else:
            up = 1.0
        yield GaugeMetricFamily(
            "parley_metrics_database_up", "Whether the database figures could be read", up
        )
        yield from metrics

    def _read(self) -> list[Metric]:
        since = timezone.now() - timedelta(hours=24)
        metrics: list[Metric] = []

        chats = Conversation.objects.filter(created_at__gte=since).aggregate(
            total=Count("pk"), handed=Count("pk", filter=Q(handoff_at__isnull=False))
        )
        metrics.append(
            GaugeMetricFamily(
                "parley_chat_conversations_24h", "Conversations started in the last 24 h", chats["total"]
            )
        )
        metrics.append(
            GaugeMetricFamily(
                "parley_chat_handoff_rate_24h",
                "Share of the last 24 h's conversations handed to a person (NaN without any)",
                _ratio(chats["handed"], chats["total"]),
            )
        )

        votes = Feedback.objects.filter(created_at__gte=since).aggregate(
            total=Count("pk"), down=Count("pk", filter=Q(value=-1))
        )
        feedback = GaugeMetricFamily(
            "parley_chat_feedback_24h", "Feedback given in the last 24 h", labels=["value"]
        )
        feedback.add_metric(["up"], votes["total"] - votes["down"])
        feedback.add_metric(["down"], votes["down"])
        metrics.append(feedback)
        metrics.append(
            GaugeMetricFamily(
                "parley_chat_thumbs_down_rate_24h",
                "Share of the last 24 h's feedback that was thumbs-down (NaN without any)",
                _ratio(votes["down"], votes["total"]),
            )
        )

        score = GaugeMetricFamily(
            "parley_drift_score", "Latest drift report's centroid cosine distance", labels=["collection"]
        )
        p_value = GaugeMetricFamily(
            "parley_drift_p_value", "Latest drift report's p-value", labels=["collection"]
        )
        alert = GaugeMetricFamily(
            "parley_drift_alert", "Whether the latest drift report alerts", labels=["collection"]
        )
        checked = GaugeMetricFamily(
            "parley_drift_checked_timestamp_seconds",
            "When the latest drift report was made",
            labels=["collection"],
        )
        latest: dict[str, DriftReport] = {}
        for report in DriftReport.objects.order_by("-created_at", "-id")[:200]:
            latest.setdefault(report.collection, report)
        for collection, report in sorted(latest.items()):
            score.add_metric([collection], math.nan if report.score is None else report.score)
            p_value.add_metric([collection], math.nan if report.p_value is None else report.p_value)
            alert.add_metric([collection], float(report.alert))
            checked.add_metric([collection], report.created_at.timestamp())
        metrics += [score, p_value, alert, checked]

        metrics.append(
            GaugeMetricFamily(
                "parley_desk_tickets_awaiting_review",
                "Tickets with a draft waiting for an agent",
                Ticket.objects.filter(status=Ticket.Status.NEEDS_REVIEW).count(),
            )
        )

        confidence = GaugeHistogramMetricFamily(
            "parley_desk_triage_confidence",
            "Confidences of the tickets triaged in the last 24 h, by field",
            labels=["field"],
        )
        rows = list(
            Ticket.objects.filter(triaged_at__gte=since).values_list(
                "category_confidence", "priority_confidence"
            )
        )
        for position, field in enumerate(("category", "priority")):
            values = [row[position] for row in rows if row[position] is not None]
            buckets = [(str(le), float(sum(v <= le for v in values))) for le in CONFIDENCE_BUCKETS]
            confidence.add_metric([field], [*buckets, ("+Inf", float(len(values)))], float(sum(values)))
        metrics.append(confidence)
        return metrics


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


REGISTRY.register(DatabaseCollector())


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, provided = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(provided.strip().encode(), token.encode())
    try:
        if ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback:
            return True
    except ValueError:
        pass
    return has_role(request.user, ADMIN, AUDITOR)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return JsonResponse(
            {
                "error": {
                    "code": "forbidden",
                    "message": "Metrics are for the monitoring system and auditors.",
                }
            },
            status=403,
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

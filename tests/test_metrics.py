"""GET /metrics: who may scrape it, the figures read from the database at scrape time, and the
answer path's own instruments."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from assistant.chat.actions import do_record_feedback, stream_answer
from assistant.insights.metrics import ANSWER_SECONDS, ANSWERS, FEEDBACK, RETRIEVAL_TOP_SCORE
from assistant.models import Conversation, DriftReport, Message, Ticket
from tests.conftest import _user

pytestmark = pytest.mark.django_db

REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def samples(response) -> dict[tuple[str, tuple], float]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(instrument, name: str, **labels) -> float:
    """A sample of one in-process instrument (not the whole registry: its database collector
    must not run inside an async test)."""
    for family in instrument.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_it_validates_access_without_a_token(client, agent):
    assert client.get("/metrics").status_code == 200  # the test client is a loopback client
    assert client.get("/metrics", **REMOTE).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    client.force_login(agent)  # an agent is no auditor
    refused = client.get("/metrics", **REMOTE)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    for role in ("auditor", "admin"):
        client.force_login(_user(f"someone-{role}", role))
        assert client.get("/metrics", **REMOTE).status_code == 200


@override_settings(METRICS_TOKEN="s3cret-scrape-token")
def test_with_a_token_only_the_bearer_gets_in(client):
    auditor = _user("audrey", "auditor")
    assert client.get("/metrics").status_code == 403  # loopback is not enough any more
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    client.force_login(auditor)
    assert client.get("/metrics").status_code == 403
    client.logout()
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token", **REMOTE)
    assert ok.status_code == 200


def test_rates_and_queue_sizes_are_read_from_the_database_at_scrape_time(client):
    handed = Conversation.objects.create()
    handed.request_person()
    handed.save()
    Conversation.objects.create()
    old = Conversation.objects.create()
    Conversation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    answers = [
        Message.objects.create(conversation=handed, role=Message.Role.ASSISTANT, text=f"answer {i}")
        for i in range(4)
    ]
    for message, vote in zip(answers, (1, -1, -1, -1), strict=True):
        async_to_sync(do_record_feedback)(str(handed.pk), message.pk, vote, "")
    Ticket.objects.create(subject="waiting", customer_email="ana@example.com", status="needs_review")
    Ticket.objects.create(
        subject="triaged",
        customer_email="bo@example.com",
        triaged_at=timezone.now(),
        category_confidence=0.45,
    )
    now = timezone.now()
    DriftReport.objects.create(
        collection="default",
        recent_since=now - timedelta(days=7),
        reference_since=now - timedelta(days=35),
        until=now,
        recent_count=40,
        reference_count=120,
        score=0.31,
        p_value=0.005,
        alert=True,
    )

    scraped = samples(client.get("/metrics"))
    assert scraped[("parley_metrics_database_up", ())] == 1
    assert scraped[("parley_chat_conversations_24h", ())] == 2  # the 3-day-old one is out of the window
    assert scraped[("parley_chat_handoff_rate_24h", ())] == pytest.approx(0.5)
    assert scraped[("parley_chat_thumbs_down_rate_24h", ())] == pytest.approx(0.75)
    assert scraped[("parley_chat_feedback_24h", (("value", "down"),))] == 3
    assert scraped[("parley_desk_tickets_awaiting_review", ())] == 1
    assert scraped[("parley_drift_score", (("collection", "default"),))] == pytest.approx(0.31)
    assert scraped[("parley_drift_alert", (("collection", "default"),))] == 1
    # The one triaged ticket's category confidence, 0.45, falls in the 0.5 bucket, not the 0.4 one.
    assert scraped[("parley_desk_triage_confidence_bucket", (("field", "category"), ("le", "0.4")))] == 0
    assert scraped[("parley_desk_triage_confidence_bucket", (("field", "category"), ("le", "0.5")))] == 1


def test_rates_without_any_data_are_not_a_number_rather_than_zero(client):
    scraped = samples(client.get("/metrics"))
    rate = scraped[("parley_chat_handoff_rate_24h", ())]
    assert rate != rate  # NaN: no conversations is not "no handoffs"


@pytest.mark.django_db(transaction=True)  # the answer path's threads share the database
async def test_stored_answers_feed_the_latency_and_outcome_instruments(demo_kb):
    answers = value(ANSWERS, "parley_chat_answers_total", outcome="canned")
    latencies = value(ANSWER_SECONDS, "parley_chat_answer_seconds_count", outcome="canned")
    retrievals = value(RETRIEVAL_TOP_SCORE, "parley_chat_retrieval_top_score_count")
    events = [e async for e in stream_answer("Hello!", conversation_id=None)]
    assert events[-1].kind == "done"
    assert value(ANSWERS, "parley_chat_answers_total", outcome="canned") == answers + 1
    assert value(ANSWER_SECONDS, "parley_chat_answer_seconds_count", outcome="canned") == latencies + 1
    assert value(RETRIEVAL_TOP_SCORE, "parley_chat_retrieval_top_score_count") == retrievals + 1

    down = value(FEEDBACK, "parley_chat_feedback_total", value="down")
    await do_record_feedback(events[0].data["id"], events[-1].data["message"], -1, "")
    assert value(FEEDBACK, "parley_chat_feedback_total", value="down") == down + 1

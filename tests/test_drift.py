"""Question drift: samples of answered questions, the windowed comparison with its permutation
test, the report, the console banner and the retention hook. Real embedder, real database."""

from __future__ import annotations

import itertools
import json
import random
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from assistant.insights.drift import check_drift, purge_samples, record_sample
from assistant.models import Conversation, DriftReport, Message, QuestionSample

pytestmark = pytest.mark.django_db

CONNECTION = [
    f"{opening} {problem} {detail}"
    for opening, problem, detail in itertools.product(
        ("My", "The"),
        (
            "wifi keeps dropping",
            "router light is blinking red",
            "internet is very slow",
            "connection cuts out",
            "router restarts by itself",
        ),
        (
            "every evening, what can I do?",
            "since yesterday, how do I fix it?",
            "in the bedroom, any tips?",
            "after the update, is there an outage?",
        ),
    )
]  # 40 questions about the connection
BILLING = [
    f"{opening} {problem} {detail}"
    for opening, problem, detail in itertools.product(
        ("Why", "How come"),
        (
            "was I charged twice",
            "is my invoice higher",
            "did my direct debit fail",
            "was my refund not paid",
            "is there a late payment fee",
        ),
        (
            "this month?",
            "on my last bill?",
            "after I cancelled?",
            "on my credit card statement?",
        ),
    )
]  # 40 questions about money


def sample(text: str, days_ago: float, collection: str = "default") -> QuestionSample:
    """A visitor asks `text` `days_ago` days ago and gets an answer; its question is sampled."""
    conversation = Conversation.objects.create(collection=collection)
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text=text)
    Message.objects.filter(pk=question.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, text="An answer.")
    return record_sample(answer.pk)


def fill(reference: list[str], recent: list[str]) -> None:
    for i, text in enumerate(reference):
        sample(text, days_ago=8 + i % 25)  # inside the 28 days before the last 7
    for i, text in enumerate(recent):
        sample(text, days_ago=0.5 + i % 6)


@override_settings(DRIFT_MIN_SAMPLES=20)
def test_questions_about_a_new_topic_raise_an_alert_with_the_farthest_questions(embedder):
    fill(reference=CONNECTION[:30], recent=BILLING[:25])
    [report] = check_drift()
    assert (report.recent_count, report.reference_count) == (25, 30)
    assert report.alert
    assert report.score > 0.2 and report.p_value < 0.01
    farthest = [Message.objects.get(pk=item["question"]).text for item in report.farthest]
    assert len(farthest) == 10 and all(text in BILLING for text in farthest)
    assert [item["distance"] for item in report.farthest] == sorted(
        (item["distance"] for item in report.farthest), reverse=True
    )


@override_settings(DRIFT_MIN_SAMPLES=20)
def test_the_same_kind_of_questions_in_both_windows_raise_no_alert(embedder):
    questions = CONNECTION[:]
    random.Random(7).shuffle(questions)
    fill(reference=questions[:20], recent=questions[20:])
    [report] = check_drift()
    assert report.score is not None and report.score < 0.05
    assert report.p_value > 0.05
    assert not report.alert


@override_settings(DRIFT_MIN_SAMPLES=20)
def test_too_few_questions_give_no_verdict(embedder):
    fill(reference=CONNECTION[:30], recent=BILLING[:5])
    [report] = check_drift()
    assert report.recent_count == 5 and report.score is None and report.p_value is None
    assert not report.alert and report.farthest == []


def test_each_answered_question_is_sampled_once_and_erased_with_its_conversation(embedder):
    first = sample("Where is my parcel?", days_ago=0)
    vector = first.question.drift_sample.embedding
    assert len(bytes(vector)) == embedder.dim * 4  # float32
    again = Message.objects.create(
        conversation=first.conversation, role=Message.Role.ASSISTANT, text="Again."
    )
    assert record_sample(again.pk).pk == first.pk  # a redelivered task adds nothing
    first.conversation.delete()
    assert not QuestionSample.objects.exists()


def test_purge_samples_deletes_those_asked_before_the_cutoff(embedder):
    sample("An old question about the router?", days_ago=100)
    kept = sample("A new question about the router?", days_ago=1)
    assert purge_samples(timezone.now() - timedelta(days=90)) == 1
    assert list(QuestionSample.objects.values_list("pk", flat=True)) == [kept.pk]


@override_settings(DRIFT_MIN_SAMPLES=20)
def test_check_drift_command_prints_json_and_the_console_shows_the_alert(embedder, client, agent):
    fill(reference=CONNECTION[:30], recent=BILLING[:25])
    out = StringIO()
    call_command("check_drift", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["alert"] is True
    [report] = printed["reports"]
    assert report["collection"] == "default" and report["enough_data"] and len(report["farthest"]) == 10
    assert DriftReport.objects.get(pk=report["id"]).alert

    client.force_login(agent)
    page = client.get("/console/").content.decode()
    assert "questions have changed" in page
    farthest = Message.objects.get(pk=report["farthest"][0]["question"])
    assert farthest.text in page
    assert f'href="/api/conversations/{farthest.conversation_id}"' in page


def test_the_console_shows_no_banner_without_an_alert(client, agent):
    client.force_login(agent)
    assert "questions have changed" not in client.get("/console/").content.decode()

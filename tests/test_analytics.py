"""The console's analytics and exports, on conversations built through the ORM (the figures are
about counting, not about how the rows were made)."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from assistant.insights.analytics import summary
from assistant.models import Conversation, Feedback, Message

pytestmark = pytest.mark.django_db


def _conversation(question: str, answer: str, *, unanswered=False, handoff=False, vote=None, verified=True):
    conversation = Conversation.objects.create(visitor="v", handoff_at=timezone.now() if handoff else None)
    Message.objects.create(conversation=conversation, role="user", text=question)
    reply = Message.objects.create(
        conversation=conversation, role="assistant", text=answer, unanswered=unanswered, verified=verified
    )
    if vote is not None:
        Feedback.objects.create(message=reply, value=vote, comment='=HYPERLINK("https://evil")')
    return conversation


@pytest.fixture
def history(db):
    _conversation("How do I reset my router?", "Hold the button [1].", vote=1)
    _conversation("how do I reset my router", "Hold the button [1].")
    _conversation("Do you sell pet food?", "I do not know.", unanswered=True, handoff=True, verified=False)
    _conversation("What does Gigabit cost?", "£40 [1].", vote=-1)
    # Sounded right, nobody complained, but its sentences were not all supported by the sources.
    _conversation("Can I pause my plan?", "Yes, for 3 months [1].", verified=False)


def test_summary_counts_resolution_handoffs_feedback_and_gaps(history):
    stats = summary(days=30)
    assert stats["conversations"] == 5
    assert stats["resolution_rate"] == 0.4  # two: verified, no handoff and no thumbs-down
    assert stats["handoff_rate"] == 0.2
    assert stats["thumbs_down_rate"] == 0.5
    assert stats["top_questions"][0] == ("how do i reset my router", 2)
    assert stats["unanswered_questions"] == [("do you sell pet food", 1)]


def test_analytics_page_and_exports_are_for_agents(client, agent, outsider, history):
    assert client.get("/console/analytics/").status_code == 302
    client.force_login(outsider)
    assert client.get("/console/analytics/").status_code == 403
    assert client.get("/console/analytics/feedback.csv").status_code == 403
    client.force_login(agent)
    page = client.get("/console/analytics/")
    assert page.status_code == 200 and b"do you sell pet food" in page.content
    rows = list(csv.DictReader(io.StringIO(client.get("/console/analytics/feedback.csv").content.decode())))
    assert {r["question"] for r in rows} == {"How do I reset my router?", "What does Gigabit cost?"}
    assert all(r["comment"].startswith("'=") for r in rows)  # no formula runs in a spreadsheet
    data = client.get("/console/analytics/conversations.json?days=7").json()
    assert len(data) == 5 and {"id", "status", "thumbs_down"} <= set(data[0])
    assert sorted(row["thumbs_down"] for row in data) == [0, 0, 0, 0, 1]
    assert {row["messages"] for row in data} == {2}
    assert client.get("/console/analytics/secrets.csv").status_code == 404
    assert client.get("/console/analytics/feedback.xml").status_code == 404


# --- What counts as a question, and as one the knowledge base did not answer -------------------


def _talk(*turns: tuple[str, str], **answer_fields):
    """A conversation as (role, text) turns; `answer_fields` go on every assistant message."""
    conversation = Conversation.objects.create(visitor="v")
    for role, text in turns:
        fields = answer_fields if role == "assistant" else {}
        Message.objects.create(conversation=conversation, role=role, text=text, **fields)
    return conversation


def test_asking_for_a_person_and_what_the_visitor_told_them_are_not_asked_questions(db):
    _talk(
        ("user", "How do I reset my router?"),
        ("assistant", "Hold the button [1]."),
        # The request for a person, then the visitor's words relayed to them: no assistant answer.
        ("user", "I want to talk to a person please"),
        ("user", "It still blinks red after the reset"),
        ("agent", "Let me check your line."),
        ("user", "Thanks, it works now"),
    )
    _talk(("user", "Can I speak to a human?"))  # a handoff request straight away
    stats = summary(days=30)
    assert stats["top_questions"] == [("how do i reset my router", 1)]
    assert stats["unanswered_questions"] == []


def test_a_handed_back_conversation_counts_its_new_questions_again(db):
    _talk(
        ("user", "talk to a person"),
        ("agent", "Hi, how can I help?"),
        ("user", "never mind"),
        ("user", "What does Gigabit cost?"),  # after the agent handed it back to the assistant
        ("assistant", "£40 a month [1]."),
    )
    assert summary(days=30)["top_questions"] == [("what does gigabit cost", 1)]


@pytest.mark.parametrize(
    "failure",
    [
        {"status": "failed", "finish_reason": "timeout"},  # the model took too long: the fallback answered
        {"status": "failed", "finish_reason": "stalled"},
        {"status": "failed", "finish_reason": "error"},
        {"status": "failed", "finish_reason": "busy"},
    ],
)
def test_a_fallback_after_the_model_failed_is_not_answered(db, failure):
    _talk(
        ("user", "Why is my bill higher this month?"),
        (
            "assistant",
            "Sorry, I can't answer that right now. I've passed your question to a member of our team.",
        ),
        **failure,
    )
    stats = summary(days=30)
    assert stats["unanswered_questions"] == [("why is my bill higher this month", 1)]
    assert stats["top_questions"] == [("why is my bill higher this month", 1)]  # it was asked


def test_declines_and_not_sure_answers_are_not_answered_but_cancelled_and_good_ones_are_not_gaps(db):
    _talk(("user", "Do you sell pet food?"), ("assistant", "Sorry, I can only help with..."), unanswered=True)
    _talk(("user", "Is there a fee to cancel?"), ("assistant", "I'm not sure. [1]"), unanswered=True)
    _talk(("user", "How long does a refund take?"), ("assistant", "5 days [1]."), verified=True)
    _talk(("user", "What is Gigabit?"), ("assistant", "Gigabit is"), status="cancelled")  # the visitor left
    gaps = dict(summary(days=30)["unanswered_questions"])
    assert gaps == {"do you sell pet food": 1, "is there a fee to cancel": 1}

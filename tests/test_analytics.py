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

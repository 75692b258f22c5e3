"""Answers the model is not asked for: small talk, and a polite decline with an offer of a person
when the knowledge base has nothing relevant. The real embedder and search decide; no chat model
is loaded for these (no text_generator fixture)."""

from __future__ import annotations

import pytest

from assistant.chat.actions import stream_answer
from assistant.chat.replies import CANNED, canned_kind
from assistant.models import Message
from retrieval.search import search

pytestmark = pytest.mark.django_db(transaction=True)


async def _events(question: str):
    return [e async for e in stream_answer(question, conversation_id=None)]


@pytest.mark.parametrize(
    "question", ["Do you sell pet food?", "What is the capital of France?", "Write me a poem about cats"]
)
async def test_out_of_scope_questions_are_declined_politely_with_a_person_offered(demo_kb, question):
    events = await _events(question)
    assert [e.kind for e in events] == ["conversation", "token", "citations", "done"]
    assert events[1].data["text"] == CANNED["decline"]["en"]
    assert events[-1].data["handoff"] is True
    message = await Message.objects.aget(pk=int(events[-1].data["message"]))
    assert message.prompt_template == "canned:decline" and message.unanswered


@pytest.mark.parametrize(("question", "kind"), [("Hello!", "greeting"), ("thanks a lot", "thanks")])
async def test_small_talk_gets_a_short_reply(demo_kb, question, kind):
    events = await _events(question)
    assert events[1].data["text"] == CANNED[kind]["en"] and events[-1].data["handoff"] is False


@pytest.mark.parametrize(
    "question",
    [
        "How do I factory reset my router?",
        "Is there a fee for cancelling?",
        "Can I pay by card?",
        "thanks, and how much is the Gigabit plan?",
        "hello, my wifi keeps dropping",
    ],
)
def test_questions_the_knowledge_base_covers_go_to_the_model(demo_kb, question):
    assert canned_kind(question, search(question, k=3)) is None

"""Curated answers win over generated ones, matched by embedding similarity (the real MiniLM);
follow-up questions search with the conversation's previous question."""

from __future__ import annotations

import pytest

from answers.models import PinnedAnswer
from answers.pinned import find_pinned
from assistant.chat.actions import retrieval_query, stream_answer
from assistant.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "Our shop in Leeds is open 9:00-17:30 Monday to Saturday. **Closed on Sundays.**"


@pytest.fixture
def pinned(db, embedder):
    return PinnedAnswer.objects.create(
        question="What are your opening hours?",
        paraphrases="When are you open?\nWhat time does the shop close?",
        answer=ANSWER,
        source_title="Opening hours",
        source_url="https://brightline.example/hours",
    )


@pytest.mark.parametrize(
    "question", ["What are your opening hours?", "when is the shop open", "At what time do you close?"]
)
def test_paraphrases_match_the_pinned_answer(pinned, question):
    match = find_pinned(question, "default")
    assert match is not None and match.answer == pinned, question


@pytest.mark.parametrize(
    "question",
    [
        "How do I reset my router?",
        "What does the Gigabit plan cost?",
        "Are you open to new partnerships?",
        "When do you close the support line?",
    ],
)
def test_other_questions_do_not_match(pinned, question):
    assert find_pinned(question, "default") is None, question


def test_an_inactive_or_other_collection_pin_is_ignored(pinned):
    assert find_pinned("What are your opening hours?", "other") is None
    pinned.active = False
    pinned.save()
    assert find_pinned("What are your opening hours?", "default") is None


async def test_a_pinned_answer_is_returned_as_written_with_its_source_and_no_model(pinned):
    # No text_generator fixture: the model is never loaded or asked for this answer.
    events = [e async for e in stream_answer("when are you open?", conversation_id=None)]
    kinds = [e.kind for e in events]
    assert kinds == ["conversation", "token", "citations", "done"]
    assert events[1].data["text"] == ANSWER
    assert events[2].data["items"][0]["url"] == "https://brightline.example/hours"
    message = await Message.objects.aget(pk=int(events[3].data["message"]))
    assert message.prompt_template == f"pinned:{pinned.pk}" and message.model_version_id is None
    assert message.text == ANSWER and message.retrieved[0]["pinned"] == pinned.pk


def test_follow_ups_search_with_the_previous_question():
    history = [("user", "What plans do you offer?"), ("assistant", "We offer Basic and Gigabit.")]
    assert retrieval_query("How much is the fastest one?", history) == (
        "What plans do you offer?\nHow much is the fastest one?"
    )
    assert retrieval_query("And that one?", history).startswith("What plans do you offer?")
    assert retrieval_query("Do you sell pet food?", history) == "Do you sell pet food?"
    standalone = "How do I factory reset my Brightline router at home?"
    assert retrieval_query(standalone, history) == standalone
    assert retrieval_query("How much is it?", []) == "How much is it?"

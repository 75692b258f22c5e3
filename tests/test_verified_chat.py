"""What a visitor reads is right or says it is unsure (issue 16), over the real websocket with the
real models: a fact the default model gets wrong when it writes freely (a new user's report:
"37 days" came back as "3 working days ... within 6 weeks"), and a question the knowledge base
cannot answer."""

from __future__ import annotations

import re

import pytest

from answers.verification import numbers
from assistant.models import Message
from tests.test_chat_ws import ask, connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ZEPHYR = """# Returns at Zephyr Logistics

Zephyr Logistics accepts returns within 37 days of delivery. Returned parcels must be unopened
and in their original packaging. To start a return, fill in the returns form on our website and
print the label it gives you.

## Delivery times

Standard parcels are delivered from 08:00 to 18:00 on working days. Express parcels arrive before
noon on the next working day.
"""


@pytest.fixture
def zephyr_kb(demo_kb, tmp_path):
    from retrieval.actions.ingest import do_ingest_file

    path = tmp_path / "zephyr-returns.md"
    path.write_text(ZEPHYR)
    do_ingest_file(path)
    return path


def _numbers(text: str) -> set[str]:
    return {fact.key for fact in numbers(re.sub(r"\[\d+\]", " ", text))}


@pytest.mark.parametrize("style", ["quote", "model"])
async def test_the_visitor_sees_the_right_fact_or_no_fact(zephyr_kb, text_generator, settings, style):
    settings.CHAT_ANSWER_STYLE = style
    communicator = await connect()
    for question in (
        "Within how many days of delivery can I return a parcel to Zephyr Logistics?",
        "When are standard parcels delivered?",
    ):
        frames = await ask(communicator, question)
        shown = "".join(f["text"] for f in frames if f["type"] == "token")
        # Every number the visitor reads is one the source states: the right fact or none.
        assert _numbers(shown) <= _numbers(ZEPHYR), shown
        message = await Message.objects.aget(pk=int(frames[-1]["message"]))
        assert message.text == shown.strip()
        visible = [s for s in message.support if s["text"] in shown]
        assert all(s["verdict"] != "unsupported" for s in visible), message.support
    await communicator.disconnect()


async def test_the_default_answer_states_the_sources_fact_and_cites_it(zephyr_kb):
    communicator = await connect()
    frames = await ask(
        communicator, "Within how many days of delivery can I return a parcel to Zephyr Logistics?"
    )
    shown = "".join(f["text"] for f in frames if f["type"] == "token")
    assert "37 days" in shown
    assert frames[-2]["items"] and frames[-2]["items"][0]["title"].startswith("Returns at Zephyr")
    message = await Message.objects.aget(pk=int(frames[-1]["message"]))
    assert message.verified and frames[-1]["handoff"] is False
    await communicator.disconnect()


async def test_a_question_the_sources_do_not_answer_gets_not_sure_and_a_person(zephyr_kb, settings):
    # The closest passage is about returns, but it says nothing of what is asked: below the
    # confidence setting the reply says so and offers a person (here the bar is set where this
    # question falls below it: what the threshold does is under test, not where it sits).
    settings.ANSWER_MIN_CONFIDENCE = 0.95
    communicator = await connect()
    frames = await ask(communicator, "Can Zephyr Logistics collect a return from my office in Harderwijk?")
    shown = "".join(f["text"] for f in frames if f["type"] == "token")
    assert shown.startswith("I'm not sure") and "person" in shown
    assert frames[-1]["handoff"] is True
    message = await Message.objects.aget(pk=int(frames[-1]["message"]))
    assert message.unanswered and not message.verified
    assert "Harderwijk" not in shown.replace("Harderwijk?", "")  # nothing invented about it
    await communicator.disconnect()

"""A model that fails, stalls or runs too long never leaves a visitor waiting: they get a fixed
reply, a person is asked for, and the answer is stored as failed with the reason.

The generators here are test doubles (a real model cannot be made to raise or hang on cue): the
tests are about the fallback around the model, not the model. Retrieval, the websocket stack,
the database and the handoff are real."""

from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from answers.fallback import FALLBACK
from answers.prompts import DRAFT_TEMPLATE_VERSION
from assistant.chat.actions import stream_answer
from assistant.insights.metrics import ERRORS
from assistant.models import Conversation, Message, Site
from config.asgi import application
from inference.base import Generation, ModelBusy, TextGenerator

# Someone is online: the fallback queues for them (with nobody online: test_no_one_online.py).
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("agent_online"),
]


@pytest.fixture(autouse=True)
def model_answers(settings):
    """These tests are about the model's failures: the chat answers in the model's own words."""
    settings.CHAT_ANSWER_STYLE = "model"


ORIGIN = (b"origin", b"http://127.0.0.1:8000")
QUESTION = "How do I factory reset my router?"  # the demo knowledge base answers it: the model is asked


class _Double(TextGenerator):
    model_version = "test-double"
    closed: list[str] = []  # which doubles were closed: the model was freed

    def stream(self, messages, params) -> Generation:
        generation = Generation()
        generation.deltas = self._deltas()
        return generation

    async def _deltas(self):
        try:
            async for delta in self.behave():
                yield delta
        finally:
            _Double.closed.append(type(self).__name__)

    async def behave(self):
        raise NotImplementedError
        yield


class BusyModel(_Double):
    async def behave(self):
        raise ModelBusy()
        yield


class StallingModel(_Double):
    """Starts an answer, then never says another word."""

    async def behave(self):
        yield "To reset"
        await asyncio.sleep(3600)
        yield "never sent"


class EndlessModel(_Double):
    """Keeps talking, a word every 50 ms, forever."""

    async def behave(self):
        count = 0
        while True:  # never the same words twice: a loop would be stopped before the timeout
            count += 1
            yield f" word{count}"
            await asyncio.sleep(0.05)


def backend(cls: type) -> str:
    return f"{__name__}.{cls.__name__}"


async def ask(text: str) -> tuple[list[dict], dict]:
    """Every frame of one answer, plus the handoff state frame that arrives through the
    conversation's group (before or after `done`)."""
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN])
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=10))["type"] == "visitor"
    await communicator.send_json_to({"type": "message", "text": text, "conversation": None})
    frames, handoff = [], None
    while handoff is None or not frames or frames[-1]["type"] not in ("done", "error"):
        frame = await communicator.receive_json_from(timeout=30)
        if frame["type"] == "handoff":
            handoff = frame
        else:
            frames.append(frame)
    await communicator.disconnect()
    return frames, handoff


def errors(code: str) -> float:
    for family in ERRORS.collect():
        for sample in family.samples:
            if sample.name == "parley_chat_errors_total" and sample.labels == {"code": code}:
                return sample.value
    return 0.0


async def assert_fell_back(frames: list[dict], handoff: dict, reason: str, streamed_before: str = "") -> None:
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "conversation" and kinds[-2:] == ["citations", "done"], kinds
    assert "error" not in kinds
    text = "".join(f["text"] for f in frames if f["type"] == "token")
    assert text.startswith(streamed_before)
    assert text.endswith(FALLBACK["en"]) and kinds.count("token") > 1  # streamed as tokens
    assert frames[-1]["handoff"] is True
    assert handoff == {"type": "handoff", "state": "queued", "agent": None}

    message = await Message.objects.aget(pk=int(frames[-1]["message"]))
    assert message.role == Message.Role.ASSISTANT
    assert message.status == Message.Status.FAILED and message.finish_reason == reason
    assert message.text == text.strip()
    conversation = await Conversation.objects.aget(pk=frames[0]["id"])
    assert conversation.status == Conversation.Status.QUEUED and conversation.handoff_at


async def test_a_busy_model_gets_the_visitor_the_fallback_and_a_person(demo_kb):
    before = errors("busy")
    with override_settings(TEXT_GENERATOR_BACKEND=backend(BusyModel)):
        frames, handoff = await ask(QUESTION)
    await assert_fell_back(frames, handoff, "busy")
    assert errors("busy") == before + 1


async def test_a_model_that_stops_talking_is_cut_off_after_the_stall_limit(demo_kb):
    _Double.closed.clear()
    before = errors("model_stalled")
    with override_settings(
        TEXT_GENERATOR_BACKEND=backend(StallingModel),
        CHAT_MODEL_STALL_SECONDS=0.5,
        CHAT_ANSWER_TIMEOUT_SECONDS=30,
    ):
        frames, handoff = await asyncio.wait_for(ask(QUESTION), timeout=20)
    # "To reset" was never a finished, verified sentence: the visitor never saw it.
    await assert_fell_back(frames, handoff, "stalled")
    assert "To reset" not in "".join(f.get("text", "") for f in frames)
    assert errors("model_stalled") == before + 1
    assert _Double.closed == ["StallingModel"]  # the stalled generation was closed, not left hanging


async def test_an_answer_that_never_ends_is_cut_off_at_the_answer_timeout(demo_kb):
    _Double.closed.clear()
    with override_settings(
        TEXT_GENERATOR_BACKEND=backend(EndlessModel),
        CHAT_MODEL_STALL_SECONDS=5,
        CHAT_ANSWER_TIMEOUT_SECONDS=0.6,
    ):
        frames, handoff = await asyncio.wait_for(ask(QUESTION), timeout=20)
    await assert_fell_back(frames, handoff, "timeout")
    assert _Double.closed == ["EndlessModel"]


async def test_the_fallback_speaks_the_sites_language(demo_kb):
    site = await Site.objects.acreate(key="acme-de", name="Acme DE", language="de")
    with override_settings(TEXT_GENERATOR_BACKEND=backend(BusyModel)):
        events = [e async for e in stream_answer(QUESTION, conversation_id=None, site=site)]
    text = "".join(e.data["text"] for e in events if e.kind == "token")
    assert text == FALLBACK["de"]
    assert events[-1].kind == "done" and events[-1].data["handoff"] is True


class UnloadableModel(TextGenerator):
    """Its weights cannot be loaded (files gone, out of memory)."""

    def __init__(self) -> None:
        raise OSError("model files missing")


async def test_a_model_that_cannot_even_be_loaded_gets_the_visitor_the_fallback(demo_kb):
    with override_settings(TEXT_GENERATOR_BACKEND=backend(UnloadableModel)):
        frames, handoff = await ask(QUESTION)
    await assert_fell_back(frames, handoff, "error")


# --- The desk and the studio: the same answer path, the same watch ------------------------------


def _ticket(text: str):
    from assistant.models import MailMessage, Ticket

    ticket = Ticket.objects.create(subject="Router", customer_email="ana@example.com", customer_name="Ana")
    MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id="<fallback-1@example.com>",
        from_email="ana@example.com",
        from_name="Ana",
        subject="Router",
        text=text,
    )
    return ticket


def test_a_model_that_stops_talking_gets_the_desk_a_flagged_empty_draft_with_its_provenance(demo_kb):
    from assistant.desk.drafting import write_draft_or_flag

    _Double.closed.clear()
    ticket = _ticket(QUESTION)
    with override_settings(
        TEXT_GENERATOR_BACKEND=backend(StallingModel), ANSWER_BACKGROUND_STALL_SECONDS=0.5
    ):
        draft = write_draft_or_flag(ticket)
    assert draft.body == "" and draft.low_confidence  # never the half-written "To reset"
    assert draft.flags == [
        "No draft was written: the model stopped writing. Write the reply yourself, or regenerate it later."
    ]
    # What the attempt was given stays on record: the template, the prompt, the numbered chunks.
    assert draft.prompt_template == DRAFT_TEMPLATE_VERSION and draft.prompt[-1]["role"] == "user"
    assert draft.retrieved and all({"chunk", "score", "source"} <= set(r) for r in draft.retrieved)
    assert _Double.closed == ["StallingModel"]


def test_an_article_part_from_a_model_that_never_stops_fails_the_step_not_the_worker(demo_kb):
    from content.generation import generate
    from content.models import Brief, ContentItem

    brief = Brief.objects.create(topic="Factory reset", keyphrase="factory reset", length="short")
    item = ContentItem.objects.create(brief=brief, generation=ContentItem.Generation.QUEUED)
    with override_settings(
        TEXT_GENERATOR_BACKEND=backend(EndlessModel),
        ANSWER_BACKGROUND_STALL_SECONDS=5,
        ANSWER_BACKGROUND_TIMEOUT_SECONDS=0.6,
    ):
        generate(item.pk)
    item.refresh_from_db()
    assert item.generation == ContentItem.Generation.FAILED and "CutOff" in item.error


class LoopingModel(_Double):
    """Says one sentence, then the same few words over and over (a 135M model's favourite)."""

    async def behave(self):
        yield "Hold the pinhole button for 15 seconds."
        while True:
            yield " Tablets running on tablets"
            await asyncio.sleep(0.01)


async def test_a_model_that_loops_is_stopped_at_the_loop_and_its_answer_ends_before_it(demo_kb):
    from answers.generate import Spec, complete
    from answers.grounding import Prompt

    _Double.closed.clear()
    with override_settings(TEXT_GENERATOR_BACKEND=backend(LoopingModel)):
        from answers.fallback import load_generator

        answer = await complete(
            load_generator(), Prompt(messages=[], sources=[]), Spec("Be brief.", "test", max_tokens=500)
        )
    assert answer.looped and answer.failure is None
    assert answer.text == "Hold the pinhole button for 15 seconds."
    assert _Double.closed == ["LoopingModel"]  # the model was stopped, not left to run to the cap

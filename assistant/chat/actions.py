"""Every write and side effect of the website assistant. The chat consumer calls `stream_answer`:
store the question, then the one answer path (answers/: an action's lookup in the company's
systems, a pinned answer, or retrieve, screen, redact, fit, stream, guard, restore, fall back),
store the answer with its provenance."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from answers.confidence import offers_person
from answers.extractive import Checked, quoted_reply
from answers.fallback import fallback_text, finish_reason, load_generator
from answers.generate import Answer, Spec
from answers.grounding import Ask, Retrieval, compose, retrieve
from answers.lookups.runner import Plan
from answers.prompts import ANSWER_TEMPLATE_VERSION, INSTRUCTIONS
from answers.support import records
from answers.verification import SentenceCheck, Verification
from answers.verified import checked_sentences
from assistant.chat import handoff
from assistant.chat.access import get_visitor_conversation
from assistant.chat.errors import ChatError
from assistant.chat.events import AnswerEvent
from assistant.chat.replies import (
    action_answer,
    canned_answer,
    canned_kind,
    lookup_plan,
    pinned_answer,
    quoted_answer,
    store_answer,
)
from assistant.insights.metrics import count_error, observe_retrieval
from assistant.models import Conversation, Feedback, Message

log = logging.getLogger(__name__)


def get_or_start_conversation(
    conversation_id: str | None, collection: str, visitor: str | None = None, site=None
) -> Conversation:
    """The conversation, or a new one when id is None. With `visitor`, only that visitor's own
    conversation is found: someone else's id answers exactly like a missing one."""
    if conversation_id is None:
        return Conversation.objects.create(collection=collection, visitor=visitor or "", site=site)
    return get_visitor_conversation(conversation_id, visitor)


def _history(conversation: Conversation, before: Message) -> list[tuple[str, str]]:
    turns = settings.CHAT_HISTORY_TURNS * 2
    if turns == 0:
        return []
    rows = (
        conversation.messages.filter(id__lt=before.id, status=Message.Status.COMPLETE)
        .exclude(role=Message.Role.AGENT)
        .order_by("-id")[:turns]
    )
    return [(m.role, m.text) for m in reversed(rows)]


@sync_to_async
def _begin(
    conversation_id: str | None, collection: str, text: str, visitor: str | None, site
) -> tuple[Conversation, list[tuple[str, str]], Retrieval | Plan]:
    conversation = get_or_start_conversation(conversation_id, collection, visitor, site)
    if conversation.status == Conversation.Status.CLOSED:
        raise ChatError("conversation_closed", "This conversation is closed; start a new one.")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text=text)
    history = _history(conversation, question)
    # A lookup in the company's systems comes first ("Where is my order ZX1234?"): the
    # knowledge base cannot answer it.
    plan = lookup_plan(conversation, question)
    if plan is not None:
        return conversation, history, plan
    # A pinned answer for the visitor's own words wins; else the knowledge base is searched
    # (public documents only: private ones never reach the prompt or a citation).
    retrieval = retrieve(
        Ask(
            retrieval_query(text, history),
            collection=conversation.collection,
            k=settings.CHAT_RETRIEVAL_K,
            pinned=True,
            pinned_text=text,
        )
    )
    if retrieval.pinned is None:
        observe_retrieval(list(retrieval.hits))
    return conversation, history, retrieval


@sync_to_async
def _finish(
    conversation: Conversation,
    text: str,
    answer: Answer,
    status: str,
    citations: list[dict[str, Any]],
    started: float,
    checked: Checked,
) -> Message:
    usage = answer.usage
    with transaction.atomic():  # with the model version it names (new to the registry: a row)
        return store_answer(
            conversation,
            text,
            status=status,
            **answer.provenance().fields(),
            citations=citations,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            first_token_ms=round(usage.seconds_to_first_token * 1000)
            if usage and usage.seconds_to_first_token is not None
            else None,
            latency_ms=round((time.perf_counter() - started) * 1000),
            finish_reason=finish_reason(answer.failure)
            if answer.failure
            else (usage.finish_reason if usage else ""),
            unanswered=status == Message.Status.COMPLETE
            and (offers_person(text, answer.prompt.sources) or not checked.sure),
            support=checked.support,
            confidence=checked.confidence,
            verified=status == Message.Status.COMPLETE and answer.failure is None and checked.verified,
        )


async def stream_answer(
    text: str,
    *,
    conversation_id: str | None,
    collection: str = "default",
    visitor: str | None = None,
    site=None,
) -> AsyncIterator[AnswerEvent]:
    """Answer a visitor's question, yielding events for the client as they happen.

    The answer is stored whatever happens: complete, cut short because the visitor left
    (status "cancelled", with the text generated so far) or failed.
    """
    started = time.perf_counter()
    conversation, history, retrieval = await _begin(conversation_id, collection, text, visitor, site)
    yield AnswerEvent("conversation", {"id": str(conversation.id)})
    if isinstance(retrieval, Plan):
        async for event in action_answer(conversation, retrieval, visitor or "", started):
            yield event
        return
    if retrieval.pinned is not None:
        async for event in pinned_answer(conversation, retrieval.pinned, started):
            yield event
        return
    canned = canned_kind(text, list(retrieval.hits))
    if canned is not None:  # small talk, or nothing relevant in the knowledge base
        async for event in canned_answer(conversation, canned, list(retrieval.hits), started):
            yield event
        return

    if settings.CHAT_ANSWER_STYLE == "quote":
        async for event in quoted_answer(conversation, text, retrieval, started):
            yield event
        return
    async for event in _model_answer(conversation, text, history, retrieval, started):
        yield event


async def _model_answer(
    conversation: Conversation,
    text: str,
    history: list[tuple[str, str]],
    retrieval: Retrieval,
    started: float,
) -> AsyncIterator[AnswerEvent]:
    """The model's own words, sentence by sentence, each verified before the visitor reads it
    (answers/verified.py): unsupported sentences are stored but never shown, and an answer left
    with nothing supported is replaced by the quoted sources (answers/extractive.py). A model
    that cannot be loaded, fails, stalls or runs on ends in the fallback, never a crash or hang."""
    generator = await sync_to_async(load_generator, thread_sensitive=False)()  # loads once
    spec = Spec(INSTRUCTIONS, ANSWER_TEMPLATE_VERSION, settings.CHAT_MAX_ANSWER_TOKENS)
    # The model sees placeholders for personal data; the visitor gets the values back.
    prompt = await sync_to_async(compose)(
        text,
        retrieval,
        instructions=spec.instructions,
        count_tokens=generator.count_tokens,
        history=tuple(history),
    )
    answer = Answer(generator, prompt, spec)
    sentences = checked_sentences(answer, text)
    checks: list[SentenceCheck] = []  # every sentence the model wrote, shown or not
    shown: list[str] = []
    status = Message.Status.FAILED
    try:
        async for sentence in sentences:
            checks.append(sentence)
            if sentence.supported:  # supported, or neutral ("I hope this helps.")
                yield AnswerEvent("token", {"text": (" " if shown else "") + sentence.text})
                shown.append(sentence.text)
        if answer.failure is None:
            status = Message.Status.COMPLETE
    except (asyncio.CancelledError, GeneratorExit):
        status = Message.Status.CANCELLED
        raise
    finally:
        await sentences.aclose()  # the visitor left: the model stops
        reply, fallback, citations = " ".join(shown), "", answer.citations()
        visible = Verification(tuple(c for c in checks if c.supported), settings.ANSWER_SUPPORT_THRESHOLD)
        checked = Checked(
            support=records(Verification(tuple(checks)), prompt.sources),
            confidence=visible.confidence,
            verified=visible.all_supported,
            sure=visible.confidence >= settings.ANSWER_MIN_CONFIDENCE,
        )
        if answer.failure is not None:
            # Busy, failed, stalled or too slow: the visitor gets a fixed reply and a person
            # rather than an error to retry; what was shown stays, the fallback follows it.
            count_error(answer.failure.code)
            fallback = ("\n\n" if reply else "") + fallback_text(conversation.language)
            reply, citations = (reply + fallback).strip(), []
        elif status == Message.Status.COMPLETE and not visible.all_supported:
            # Nothing the model said survived the check: the sources speak for themselves.
            quotes = await sync_to_async(quoted_reply)(text, prompt.sources, conversation.language)
            fallback = ("\n\n" if reply else "") + quotes.text
            reply = (reply + fallback).strip()
            citations = [c for c in citations if c["n"] in quotes.cited]
            checked = replace(quotes.checked, support=checked.support + quotes.checked.support)
        message = await asyncio.shield(
            _finish(conversation, reply, answer, status, citations, started, checked)
        )
    if fallback:
        for piece in re.findall(r"\s*\S+", fallback):
            yield AnswerEvent("token", {"text": piece})
    offline = await _hand_off(conversation) if answer.failure is not None else None
    if offline is not None:  # nobody online: the visitor is told so and offered email
        yield AnswerEvent("offline", {k: v for k, v in offline.items() if k != "type"})
    yield AnswerEvent("citations", {"items": citations})
    handoff_offered = answer.failure is not None or message.unanswered
    yield AnswerEvent("done", {"message": str(message.pk), "handoff": handoff_offered})


async def _hand_off(conversation: Conversation) -> dict[str, Any] | None:
    """Ask for a person after a fallback reply: queued when an agent is online, else the
    offline frame to send (handoff.ask_for_person)."""
    try:
        return await handoff.ask_for_person(conversation)
    except ChatError as exc:  # closed meanwhile: the fallback reply still stands
        log.warning("event=fallback_handoff_refused code=%s", exc.code)
        return None


_FOLLOW_UP = re.compile(
    r"\b(it|its|it's|that|this|those|these|they|them|their|one|ones|there|he|she|also|too|else|more)\b",
    re.IGNORECASE,
)


def retrieval_query(question: str, history: list[tuple[str, str]]) -> str:
    """The text to search with. A follow-up ("How much is the fastest one?", told by its
    pronouns) leans on the conversation, so the visitor's previous question is searched with
    it; a question that stands on its own ("Do you sell pet food?") is searched alone. (A
    rewrite by the 135M chat model was not reliable enough to trust: it invents details; this
    keeps the visitor's own words.)"""
    previous = next((text for role, text in reversed(history) if role == "user"), None)
    if previous is None:
        return question
    if _FOLLOW_UP.search(question):
        return f"{previous}\n{question}"
    return question


def storable(text: str) -> bool:
    """Whether text can be stored and sent on as it is: JSON may carry lone surrogates ("\\ud800"),
    which are not UTF-8, and NUL characters, which PostgreSQL's text columns refuse."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_row_id(value: Any) -> bool:
    """A message id as the server sent it (a decimal string) or as a number: within a database
    integer, so a huge or non-finite one is "no such message" rather than an overflow."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


@sync_to_async
def do_record_feedback(conversation_id: str | None, message_id: Any, value: Any, comment: Any) -> Feedback:
    """Attach a visitor's thumbs up/down to an answer in their own conversation."""
    try:
        if not is_row_id(message_id):
            raise ValueError(message_id)
        conversation = uuid.UUID(str(conversation_id))
    except ValueError as exc:
        raise ChatError("unknown_message", "That message does not exist.") from exc
    if value not in (1, -1) or isinstance(value, bool):
        raise ChatError("bad_feedback", "Feedback value must be 1 or -1.")
    if comment is not None and not isinstance(comment, str):
        raise ChatError("bad_feedback", "Feedback comment must be text.")
    if comment is not None and not storable(comment):
        raise ChatError("bad_feedback", "The comment contains characters that are not text.")
    comment = (comment or "")[: settings.CHAT_MAX_MESSAGE_CHARS]
    try:
        message = Message.objects.get(
            pk=int(message_id), role=Message.Role.ASSISTANT, conversation_id=conversation
        )
    except Message.DoesNotExist as exc:
        raise ChatError("unknown_message", "That message does not exist.") from exc
    return Feedback.objects.create(message=message, value=value, comment=comment)

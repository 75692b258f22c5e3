"""Every write and side effect of the website assistant. The chat consumer (and later the email
desk) calls `stream_answer`, the one answer path: store the question, retrieve, prompt, stream,
store the answer with its provenance."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from answers.fallback import UnavailableGenerator, fallback_text, finish_reason, watched
from answers.guard import AnswerGuard, screen_hits, source_links
from answers.prompts import ANSWER_TEMPLATE_VERSION, INSTRUCTIONS, Source, fit_answer_messages, redact_turns
from assistant.chat.errors import ChatError
from assistant.chat.pinned import find_pinned
from assistant.chat.replies import canned_answer, canned_kind, pinned_answer
from assistant.insights.metrics import count_error, observe_retrieval
from assistant.models import Conversation, Feedback, Message
from core.redaction import StreamRestorer
from inference.actions import version_for_key
from inference.base import GenerationParams, InferenceError, Usage
from inference.services import get_text_generator
from retrieval.search import Hit, search

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerEvent:
    kind: str  # "conversation" | "token" | "citations" | "done"
    data: dict[str, Any]


def get_or_start_conversation(
    conversation_id: str | None, collection: str, visitor: str | None = None, site=None
) -> Conversation:
    """The conversation, or a new one when id is None. With `visitor`, only that visitor's own
    conversation is found: someone else's id answers exactly like a missing one."""
    if conversation_id is None:
        return Conversation.objects.create(collection=collection, visitor=visitor or "", site=site)
    return get_visitor_conversation(conversation_id, visitor)


def get_visitor_conversation(conversation_id: Any, visitor: str | None) -> Conversation:
    try:
        pk = uuid.UUID(str(conversation_id))
        conversation = Conversation.objects.select_related("agent", "site").get(pk=pk)
    except (ValueError, Conversation.DoesNotExist) as exc:
        # The same answer for a malformed and a missing id: ids are not to be probed.
        raise ChatError("unknown_conversation", "That conversation does not exist.") from exc
    if visitor is not None and conversation.visitor != visitor:
        raise ChatError("unknown_conversation", "That conversation does not exist.")
    return conversation


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


def citation_items(sources: list[Source]) -> list[dict[str, Any]]:
    return [
        {
            "n": s.n,
            "title": s.best.title,
            "url": s.best.url,
            "section": s.best.section,
            "snippet": _snippet(s.best.text),
        }
        for s in sources
    ]


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


@sync_to_async
def _begin(conversation_id: str | None, collection: str, text: str, visitor: str | None, site):
    conversation = get_or_start_conversation(conversation_id, collection, visitor, site)
    if conversation.status == Conversation.Status.CLOSED:
        raise ChatError("conversation_closed", "This conversation is closed; start a new one.")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text=text)
    pinned = find_pinned(text, conversation.collection)
    if pinned is not None:
        return conversation, question, [], [], pinned
    history = _history(conversation, question)
    query = retrieval_query(text, history)
    # Visitors see public documents only: private ones never reach the prompt or a citation.
    hits = search(query, collection=conversation.collection, k=settings.CHAT_RETRIEVAL_K, public_only=True)
    observe_retrieval(hits)
    return conversation, question, history, hits, None


@sync_to_async
def _finish(
    conversation: Conversation,
    text: str,
    usage: Usage | None,
    sources: list[Source],
    status: str,
    citations: list[dict[str, Any]],
    started: float,
    excluded: list[Hit] = (),
    failed_because: str | None = None,
) -> Message:
    with transaction.atomic():
        version = version_for_key(usage.model_version, "chat") if usage else None
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=text,
            status=status,
            model_version=version,
            prompt_template=ANSWER_TEMPLATE_VERSION,
            retrieved=[
                {"chunk": hit.chunk_id, "score": round(hit.score, 4), "source": s.n}
                for s in sources
                for hit in s.hits
            ]
            + [
                {"chunk": hit.chunk_id, "score": round(hit.score, 4), "excluded": "instructions"}
                for hit in excluded
            ],
            citations=citations,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            first_token_ms=round(usage.seconds_to_first_token * 1000)
            if usage and usage.seconds_to_first_token is not None
            else None,
            latency_ms=round((time.perf_counter() - started) * 1000),
            finish_reason=failed_because or (usage.finish_reason if usage else ""),
            unanswered=status == Message.Status.COMPLETE and offers_person(text, sources),
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=message.created_at)
    return message


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
    conversation, _question, history, hits, pinned = await _begin(
        conversation_id, collection, text, visitor, site
    )
    yield AnswerEvent("conversation", {"id": str(conversation.id)})
    if pinned is not None:
        async for event in pinned_answer(conversation, *pinned, started):
            yield event
        return
    canned = canned_kind(text, hits)
    if canned is not None:  # small talk, or nothing relevant in the knowledge base
        async for event in canned_answer(conversation, canned, hits, started):
            yield event
        return

    try:
        generator = await sync_to_async(get_text_generator, thread_sensitive=False)()  # loads once
    except Exception as exc:  # the model cannot be loaded: the fallback below, not a crash
        log.exception("event=text_generator_unavailable")
        generator = UnavailableGenerator(exc)
    hits, excluded = screen_hits(hits)
    if excluded:
        log.warning(
            "event=passages_excluded reason=instructions chunks=%s",
            ",".join(str(h.chunk_id) for h in excluded),
        )
    # The model sees placeholders for personal data; the visitor gets the values back (restorer).
    question, history, mapping = await sync_to_async(redact_turns)(text, history)
    messages, sources = fit_answer_messages(
        question,
        hits,
        history,
        count_tokens=generator.count_tokens,
        budget=settings.INFERENCE_MAX_INPUT_TOKENS,
    )
    generation = generator.stream(
        messages,
        GenerationParams(
            max_tokens=settings.CHAT_MAX_ANSWER_TOKENS,
            temperature=0.0,
            repetition_penalty=settings.CHAT_REPETITION_PENALTY,
        ),
    )
    # A failing, stalled or endless model ends in the fallback below, never in a hang.
    generation.deltas = watched(
        generation.deltas,
        stall=settings.CHAT_MODEL_STALL_SECONDS,
        timeout=settings.CHAT_ANSWER_TIMEOUT_SECONDS,
    )
    failure: InferenceError | None = None
    parts: list[str] = []
    citations = citation_items(sources)
    status = Message.Status.FAILED
    # Links the model writes survive only where a source it was given names that URL.
    guard = AnswerGuard(INSTRUCTIONS, links=source_links(sources))
    restorer = StreamRestorer(mapping)
    try:
        async for delta in generation:
            safe = guard.feed(restorer.feed(delta))
            if safe:
                parts.append(safe)
                yield AnswerEvent("token", {"text": safe})
            if guard.leaked:
                await generation.deltas.aclose()  # stop the model: nothing more is sent
                break
        tail = guard.feed(restorer.flush()) + guard.flush()
        if tail:
            parts.append(tail)
            yield AnswerEvent("token", {"text": tail})
        status = Message.Status.COMPLETE
    except InferenceError as exc:
        # Busy, failed, stalled or too slow: the visitor gets a fixed reply and a person rather
        # than an error to retry; what was streamed before stays, the fallback follows it.
        failure = exc
        log.warning("event=answer_fallback code=%s streamed_chars=%s", exc.code, sum(map(len, parts)))
        count_error(exc.code)
        fallback = ("\n\n" if "".join(parts).strip() else "") + fallback_text(conversation)
        parts.append(fallback)
        citations = []
    except (asyncio.CancelledError, GeneratorExit):
        status = Message.Status.CANCELLED
        raise
    finally:
        answer = "".join(parts).strip()
        message = await asyncio.shield(
            _finish(
                conversation,
                answer,
                generation.usage,
                sources,
                status,
                citations,
                started,
                excluded,
                failed_because=finish_reason(failure) if failure else None,
            )
        )
    if failure is not None:
        for piece in re.findall(r"\s*\S+", fallback):
            yield AnswerEvent("token", {"text": piece})
        await _hand_off(conversation)
    yield AnswerEvent("citations", {"items": citations})
    yield AnswerEvent(
        "done", {"message": str(message.pk), "handoff": failure is not None or offers_person(answer, sources)}
    )


async def _hand_off(conversation: Conversation) -> None:
    """Queue the conversation for a person after a fallback reply."""
    from assistant.chat import handoff  # handoff.py builds on this module

    try:
        await handoff.request_person(conversation)
    except ChatError as exc:  # closed meanwhile: the fallback reply still stands
        log.warning("event=fallback_handoff_refused code=%s", exc.code)


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


_DOES_NOT_KNOW = ("do not know", "don't know", "cannot answer", "can't answer", "not sure", "no information")


def offers_person(answer: str, sources: list[Source]) -> bool:
    """Whether to offer a person under this answer: nothing relevant was retrieved, or the model
    said it does not know (the prompt tells it to say so rather than guess)."""
    return not sources or not answer or says_it_does_not_know(answer)


def says_it_does_not_know(answer: str) -> bool:
    """Whether the model said it does not know (the prompt tells it to, rather than guess)."""
    lowered = answer.lower()
    return any(phrase in lowered for phrase in _DOES_NOT_KNOW)


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

"""Answers the model is not asked for: lookups in the company's systems (answers/lookups/),
pinned answers (answers/pinned.py), small talk, and a polite decline when the knowledge base has
nothing relevant (out of scope: the best passage's embedding similarity is below
CHAT_MIN_RELEVANCE). Each is stored like a generated answer, with
`prompt_template` saying which rule wrote it."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from answers.confidence import relevance
from answers.extractive import EXTRACTIVE_TEMPLATE, quoted_reply
from answers.grounding import Retrieval
from answers.lookups.runner import Plan, ask_for_parameter, asked_action, perform, plan_lookup, record_lookup
from answers.pinned import PinnedMatch
from answers.prompts import number_sources
from answers.provenance import citation_items, retrieved_records
from answers.verification import split_sentences
from assistant.chat.events import AnswerEvent
from assistant.models import Conversation, Message
from core.audit import subject_hash
from retrieval.search import Hit

_GREETING = re.compile(
    r"^\W*(hi|hello|hey|good (morning|afternoon|evening)|hallo|guten tag|bonjour|salut)( there)?\W*$", re.I
)
_THANKS = re.compile(
    r"^\W*(thanks?( you)?( so much| a lot| very much)?|cheers|danke( sch(ö|oe)n)?|merci( beaucoup)?)\W*$",
    re.I,
)

CANNED = {
    "greeting": {
        "en": "Hello! What can I help you with?",
        "de": "Hallo! Wobei kann ich Ihnen helfen?",
        "fr": "Bonjour ! Comment puis-je vous aider ?",
    },
    "thanks": {
        "en": "You're welcome! Is there anything else I can help with?",
        "de": "Gern geschehen! Kann ich sonst noch helfen?",
        "fr": "Avec plaisir ! Puis-je vous aider pour autre chose ?",
    },
    "decline": {
        "en": "Sorry, I can only help with questions about our products and services, and I found "
        "nothing about that in our help pages. Would you like to talk to a person?",
        "de": "Entschuldigung, ich kann nur Fragen zu unseren Produkten und Leistungen beantworten, "
        "und dazu habe ich in unseren Hilfeseiten nichts gefunden. Möchten Sie mit einer Person sprechen?",
        "fr": "Désolé, je ne peux répondre qu'aux questions sur nos produits et services, et nos pages "
        "d'aide n'en parlent pas. Voulez-vous parler à une personne ?",
    },
}


def canned_kind(question: str, hits: list[Hit]) -> str | None:
    """ "greeting", "thanks" or "decline" when the model should not be asked; None otherwise."""
    if _GREETING.match(question):
        return "greeting"
    if _THANKS.match(question):
        return "thanks"
    best = relevance(hits)
    if not hits or (best is not None and best < settings.CHAT_MIN_RELEVANCE):
        return "decline"
    return None


async def canned_answer(conversation: Conversation, kind: str, hits: list[Hit], started: float):
    language = conversation.language or "en"
    text = CANNED[kind].get(language, CANNED[kind]["en"])
    retrieved = [{"chunk": h.chunk_id, "score": round(h.score, 4)} for h in hits]
    async for event in fixed_answer(
        conversation, text, [], f"canned:{kind}", retrieved, started, offer_person=kind == "decline"
    ):
        yield event


async def quoted_answer(conversation: Conversation, question: str, retrieval: Retrieval, started: float):
    """The best source sentences, cited, or "not sure", the closest passage and a person
    (answers/extractive.py): CHAT_ANSWER_STYLE "quote", the default."""
    sources = number_sources(list(retrieval.kept))
    # On the one sync thread, as retrieval's search is: the embedder's tokenizer is not made for
    # concurrent calls from several threads.
    reply = await sync_to_async(quoted_reply)(question, sources, conversation.language)
    async for event in fixed_answer(
        conversation,
        reply.text,
        [c for c in citation_items(sources) if c["n"] in reply.cited],
        EXTRACTIVE_TEMPLATE,
        list(retrieved_records(sources, retrieval.excluded)),
        started,
        offer_person=not reply.checked.sure,
        by_sentence=True,
        support=reply.checked.support,
        confidence=reply.checked.confidence,
        verified=reply.checked.verified,
    ):
        yield event


# The visitor's own messages of this conversation searched for an action's parameters: never
# another conversation's, never an agent's.
_LOOKUP_TEXTS = 20


def lookup_plan(conversation: Conversation, question: Message) -> Plan | None:
    """The lookup the visitor's message asks for (or continues, answering the parameter the
    previous answer asked for), with the values they typed in this conversation; None: none."""
    texts = conversation.messages.filter(role=Message.Role.USER).order_by("-id")[:_LOOKUP_TEXTS]
    previous = (
        conversation.messages.filter(role=Message.Role.ASSISTANT, id__lt=question.id).order_by("-id").first()
    )
    return plan_lookup(
        question.text,
        texts=[m.text for m in texts],
        collection=conversation.collection,
        asked=asked_action(previous.prompt_template) if previous is not None else None,
    )


async def action_answer(conversation: Conversation, plan: Plan, visitor: str, started: float):
    """Ask for the missing parameter in one short turn, or look it up and answer from the
    system's reply template (verified by construction: the values are the system's). A failed,
    slow or refused lookup says so and offers a person."""
    where = str(conversation.id)
    if plan.missing is not None:
        reply = await sync_to_async(ask_for_parameter)(plan, conversation=where)
    else:
        # On a thread of its own: a slow system (up to the action's timeout) holds no one else.
        performed = await sync_to_async(perform, thread_sensitive=False)(plan, visitor)
        reply = await sync_to_async(record_lookup)(
            plan, performed, conversation=where, actor=f"visitor:{subject_hash(visitor)}"
        )
    async for event in fixed_answer(
        conversation,
        reply.text,
        [],
        reply.template,
        reply.retrieved(),
        started,
        offer_person=reply.offer_person,
        support=reply.support(),
        verified=reply.verified,
        confidence=round(plan.score, 4),
    ):
        yield event


async def pinned_answer(conversation: Conversation, pinned: PinnedMatch, started: float):
    """A curated answer, as written, with its source."""
    async for event in fixed_answer(
        conversation,
        pinned.answer.answer,
        pinned.citations(),
        pinned.template,
        pinned.retrieved(),
        started,
        verified=True,  # written and approved by a person
        confidence=pinned.score,
    ):
        yield event


async def fixed_answer(
    conversation: Conversation,
    text: str,
    citations: list[dict[str, Any]],
    template: str,
    retrieved: list[dict[str, Any]],
    started: float,
    *,
    offer_person: bool = False,
    by_sentence: bool = False,
    **fields: Any,
):
    # A quoted answer goes sentence by sentence, as a verified model answer does (answers/verified.py).
    for i, piece in enumerate(split_sentences(text) if by_sentence else [text]):
        yield AnswerEvent("token", {"text": (" " if i else "") + piece})
    message = await sync_to_async(store_answer)(
        conversation,
        text,
        prompt_template=template,
        retrieved=retrieved,
        citations=citations,
        latency_ms=round((time.perf_counter() - started) * 1000),
        finish_reason=template.split(":", 1)[0],
        unanswered=offer_person,
        **fields,
    )
    yield AnswerEvent("citations", {"items": citations})
    yield AnswerEvent("done", {"message": str(message.pk), "handoff": offer_person})


def store_answer(conversation: Conversation, text: str, **fields: Any) -> Message:
    """Store an answer of the assistant (generated or fixed) and mark the conversation updated."""
    with transaction.atomic():
        message = Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, text=text, **fields
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=message.created_at)
    return message


# --- The answer as text, for an agent (the copilot) ------------------------------------------------


@dataclass(frozen=True)
class Suggested:
    """What the assistant would answer, as text: sent to nobody and stored nowhere."""

    text: str
    citations: list[dict[str, Any]]
    template: str  # which rule wrote it, as a stored answer's prompt_template says
    verified: bool  # every sentence is the sources' own, or a pinned answer a person approved
    sure: bool  # the assistant would not have offered a person


def suggested_reply(question: str, retrieval: Retrieval, language: str | None = None) -> Suggested:
    """The answer the widget gives `question` over `retrieval` (answers.grounding.retrieve, as the
    chat asks it), as text with its citations, for an agent to insert and edit (the copilot,
    assistant/chat/copilot.py). The same choices in the same order as actions.stream_answer: a
    pinned answer as written, small talk or the decline, else the quoted sources with their check
    (quoted_reply, as quoted_answer). Under CHAT_ANSWER_STYLE "model" too: a suggestion is wanted
    in a second, the quotes are what that path falls back to anyway, and a model run here would
    take the slot of a visitor waiting for theirs. Synchronous (the embedder): call it off the
    event loop, on the one sync thread, as quoted_answer does."""
    if retrieval.pinned is not None:
        pinned = retrieval.pinned
        return Suggested(pinned.answer.answer, pinned.citations(), pinned.template, True, True)
    kind = canned_kind(question, list(retrieval.hits))
    if kind is not None:
        text = CANNED[kind].get(language or "en", CANNED[kind]["en"])
        return Suggested(text, [], f"canned:{kind}", False, kind != "decline")
    sources = number_sources(list(retrieval.kept))
    reply = quoted_reply(question, sources, language)
    citations = [c for c in citation_items(sources) if c["n"] in reply.cited]
    return Suggested(reply.text, citations, EXTRACTIVE_TEMPLATE, reply.checked.verified, reply.checked.sure)

"""Grounded draft replies for tickets. The model writes; an agent reviews (assistant/desk/review.py).

A draft is grounded like a chat answer (retrieval over the knowledge base, numbered sources,
citations), with the thread's earlier mails in the prompt. Nothing is hidden for being weak: a
draft with no relevant source, one where the model says it does not know, or one for a mail that
tried to instruct the model is kept and flagged `low_confidence` with the reasons in words. When
no draft can be written at all (the model busy or down, a mail longer than it accepts), the
ticket still gets a version: empty and flagged with why, so it reaches the review queue and an
agent writes the reply or regenerates later, instead of the ticket waiting in "new" for ever.
"""

from __future__ import annotations

import logging
import time

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from answers.guard import AnswerGuard, carries_instructions, screen_hits, source_links
from answers.prompts import DRAFT_INSTRUCTIONS, DRAFT_TEMPLATE_VERSION, fit_answer_messages, redact_turns
from assistant.chat.actions import citation_items, offers_person
from assistant.models import Draft, MailMessage, Ticket
from core.redaction import restore
from inference.actions import version_for_key
from inference.base import GenerationParams, InferenceError, InputTooLong, ModelBusy, ModelUnavailable
from inference.services import get_text_generator
from retrieval.search import search

log = logging.getLogger(__name__)


def latest_question(ticket: Ticket) -> MailMessage | None:
    """The customer's latest mail that wants an answer (automated mail never does)."""
    return (
        ticket.messages.filter(direction=MailMessage.Direction.IN, automated="")
        .order_by("-created_at", "-id")
        .first()
    )


def _customer_text(message: MailMessage) -> str:
    return (message.reply_text or message.text).strip()


def _thread_history(ticket: Ticket, before: MailMessage) -> list[tuple[str, str]]:
    """Earlier mails of the thread, oldest first: the customer's as "user", ours as "assistant"."""
    if settings.DESK_HISTORY_MESSAGES == 0:
        return []
    rows = ticket.messages.filter(id__lt=before.id, automated="").order_by("-created_at", "-id")[
        : settings.DESK_HISTORY_MESSAGES
    ]
    return [
        ("user" if m.direction == MailMessage.Direction.IN else "assistant", _customer_text(m))
        for m in reversed(rows)
    ]


def question_text(ticket: Ticket, message: MailMessage) -> str:
    name = message.from_name or ticket.customer_name or message.from_email
    return f"Email from {name}\nSubject: {message.subject or ticket.subject}\n\n{_customer_text(message)}"


def next_version(ticket: Ticket) -> int:
    return (ticket.drafts.aggregate(top=Max("version"))["top"] or 0) + 1


def save_version(ticket: Ticket, **fields) -> Draft:
    """A new draft version; two writers racing for the same number retry with the next one."""
    for _ in range(5):
        try:
            with transaction.atomic():
                return Draft.objects.create(ticket=ticket, version=next_version(ticket), **fields)
        except IntegrityError:
            continue
    raise RuntimeError(f"could not number a draft of ticket {ticket.pk}")


def write_draft(ticket: Ticket) -> Draft | None:
    """Write a new draft version for the ticket's latest customer mail; None when there is
    nothing to answer (only automated mail)."""
    message = latest_question(ticket)
    if message is None:
        return None
    started = time.perf_counter()
    customer = _customer_text(message)
    history = _thread_history(ticket, message)
    hits = search(
        f"{message.subject or ticket.subject}\n{customer}",
        collection=settings.DESK_COLLECTION,
        k=settings.DESK_RETRIEVAL_K,
        public_only=True,  # the reply goes to a customer: no private document (issue 17, item 5)
    )
    hits, excluded = screen_hits(hits)
    # The model sees placeholders for the customer's personal data (the stored prompt too); the
    # draft gets the real values back, so the agent reviews a reply that greets them by name.
    question, history, mapping = redact_turns(
        question_text(ticket, message),
        history,
        known_names=[ticket.customer_name, *ticket.messages.values_list("from_name", flat=True)],
    )
    generator = get_text_generator()
    messages, sources = fit_answer_messages(
        question,
        hits,
        history,
        count_tokens=generator.count_tokens,
        budget=settings.INFERENCE_MAX_INPUT_TOKENS,
        instructions=DRAFT_INSTRUCTIONS,
    )
    text, usage = async_to_sync(generator.complete)(
        messages,
        GenerationParams(
            max_tokens=settings.DESK_MAX_DRAFT_TOKENS,
            temperature=0.0,
            repetition_penalty=settings.CHAT_REPETITION_PENALTY,
        ),
    )
    guard = AnswerGuard(DRAFT_INSTRUCTIONS, links=source_links(sources))  # links only to the sources
    body = (guard.feed(restore(text, mapping)) + guard.flush()).strip()

    dense = [h.dense_score for s in sources for h in s.hits if h.dense_score is not None]
    relevance = max(dense) if dense else 0.0
    flags = []
    if not sources:
        flags.append("No source in the knowledge base matched this mail.")
    elif relevance < settings.DESK_MIN_RELEVANCE:
        flags.append(f"The best source is only weakly related (similarity {relevance:.2f}).")
    if offers_person(body, sources) and sources:
        flags.append("The model says it does not know.")
    if carries_instructions(customer):
        flags.append("The mail contains instructions aimed at an AI; check the reply does not follow them.")
    if excluded:
        flags.append(f"{len(excluded)} retrieved passage(s) carried instructions and were left out.")
    if guard.leaked:
        flags.append("The model started reciting its instructions; that part was removed.")
    if not body:
        flags.append("The model wrote nothing.")

    draft = save_version(
        ticket,
        body=body,
        replying_to=message,
        model_version=version_for_key(usage.model_version, "chat"),
        prompt_template=DRAFT_TEMPLATE_VERSION,
        prompt=messages,
        retrieved=[
            {"chunk": h.chunk_id, "score": round(h.score, 4), "source": s.n} for s in sources for h in s.hits
        ]
        + [{"chunk": h.chunk_id, "score": round(h.score, 4), "excluded": "instructions"} for h in excluded],
        citations=citation_items(sources),
        confidence=round(relevance, 3),
        low_confidence=bool(flags),
        flags=flags,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        latency_ms=round((time.perf_counter() - started) * 1000),
    )
    log.info(
        "event=draft_written ticket=%s version=%s low_confidence=%s tokens=%s",
        ticket.pk,
        draft.version,
        draft.low_confidence,
        usage.completion_tokens,
    )
    return draft


def write_draft_or_flag(ticket: Ticket) -> Draft | None:
    """`write_draft`, or when it fails a flagged empty version saying why (`failed_draft`)."""
    try:
        return write_draft(ticket)
    except Exception as exc:  # noqa: BLE001 - recorded on the draft for agents, and logged
        log.warning("event=draft_failed ticket=%s error=%s", ticket.pk, type(exc).__name__)
        return failed_draft(ticket, failure_reason(exc))


def failed_draft(ticket: Ticket, reason: str) -> Draft | None:
    """An empty draft version flagged with `reason`: the ticket can go to review, where the agent
    writes the reply (an empty draft is never sent). None when there is nothing to answer."""
    message = latest_question(ticket)
    if message is None:
        return None
    return save_version(
        ticket,
        body="",
        replying_to=message,
        low_confidence=True,
        flags=[f"No draft was written: {reason}. Write the reply yourself, or regenerate it later."],
    )


def failure_reason(exc: BaseException) -> str:
    """Why drafting failed, in words for agents."""
    if isinstance(exc, InputTooLong):
        return f"the mail is longer than the model accepts ({exc.message.rstrip('.')})"
    if isinstance(exc, ModelBusy):
        return "the model was busy"
    if isinstance(exc, ModelUnavailable):
        return f"the model is not available ({exc.message.rstrip('.')})"
    if isinstance(exc, InferenceError):
        return f"the model failed ({exc.message.rstrip('.')})"
    return f"an error occurred ({type(exc).__name__})"

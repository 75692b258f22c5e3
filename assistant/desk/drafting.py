"""Grounded draft replies for tickets. The model writes; an agent reviews (assistant/desk/review.py).

A draft is written by the one answer path (answers/), like a chat answer: retrieval over the
knowledge base with screened passages, the customer's personal data redacted in the prompt and
restored in the draft, a prompt fitted to the model's budget, the output guard, the watch on a
stalled or endless model, and provenance in the shared shape; the thread's earlier mails are in
the prompt. A pinned answer that matches the mail is the draft as written. Nothing is hidden for
being weak: a draft with no relevant source, one where the model says it does not know, or one
for a mail that tried to instruct the model is kept and flagged `low_confidence` with the
reasons in words. When no draft can be written at all (the model busy, down, stalled or too
slow, a mail longer than it accepts), the ticket still gets a version: empty and flagged with
why (the desk's fallback), so it reaches the review queue and an agent writes the reply or
regenerates later, instead of the ticket waiting in "new" for ever.

The model writes the body only; the desk wraps it in a letter (assistant/desk/letter.py): a greeting with the
customer's real name (the model sees a placeholder for it) and a sign-off, in the ticket's
language. Every sentence of the body is checked against the sources the model was given
(answers/support.py) and kept on the draft (`Draft.support`): a sentence the sources do not
support flags the draft, and an agent must confirm they checked it before it is sent
(review.approve). An agent's edit is checked again against the same sources (`edit_check`,
read back by answers/provenance.given_sources).

When the mail asks what an action looks up in the company's systems and holds its parameters
("Where is my order ZX1234?"), the draft opens with the action's reply (answers/lookups/), in
its support as supported by the system (with the ActionCall's id); a lookup that fails is a
flag instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from answers.confidence import offers_person
from answers.fallback import CutOff, load_generator
from answers.generate import Answer, Spec, complete
from answers.grounding import Ask, Retrieval, compose, retrieve
from answers.guard import carries_instructions
from answers.lookups.runner import LookupReply, plan_lookup, run_lookup
from answers.pinned import PinnedMatch
from answers.prompts import DRAFT_INSTRUCTIONS, DRAFT_TEMPLATE_VERSION
from answers.provenance import given_sources
from answers.support import check, records
from answers.verification import Verification
from assistant.desk.letter import letter, letter_body
from assistant.models import Draft, MailMessage, Ticket
from inference.base import InferenceError, InputTooLong, ModelBusy, ModelUnavailable

log = logging.getLogger(__name__)


def latest_question(ticket: Ticket) -> MailMessage | None:
    """The customer's latest mail that wants an answer (automated mail never does)."""
    return (
        ticket.messages.filter(direction=MailMessage.Direction.IN, automated="")
        .order_by("-created_at", "-id")
        .first()
    )


def customer_text(message: MailMessage) -> str:
    """What the customer wrote in this mail (its new part when it quotes earlier ones)."""
    return (message.reply_text or message.text).strip()


def retrieve_for(ticket: Ticket, message: MailMessage, customer: str) -> Retrieval:
    """The desk's knowledge base searched for a mail: its subject and `customer`'s words, with a
    pinned answer for those words winning (the draft and the copilot's suggestion alike)."""
    return retrieve(
        Ask(
            f"{message.subject or ticket.subject}\n{customer}",
            collection=settings.DESK_COLLECTION,
            k=settings.DESK_RETRIEVAL_K,
            pinned=True,
            pinned_text=customer,
        )
    )


def _thread_history(ticket: Ticket, before: MailMessage) -> list[tuple[str, str]]:
    """Earlier mails of the thread, oldest first: the customer's as "user", ours as "assistant"."""
    if settings.DESK_HISTORY_MESSAGES == 0:
        return []
    rows = ticket.messages.filter(id__lt=before.id, automated="").order_by("-created_at", "-id")[
        : settings.DESK_HISTORY_MESSAGES
    ]
    return [
        ("user" if m.direction == MailMessage.Direction.IN else "assistant", customer_text(m))
        for m in reversed(rows)
    ]


def question_text(ticket: Ticket, message: MailMessage) -> str:
    name = message.from_name or ticket.customer_name or message.from_email
    return f"Email from {name}\nSubject: {message.subject or ticket.subject}\n\n{customer_text(message)}"


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
    customer = customer_text(message)
    lookup = _lookup(ticket, message, customer)
    retrieval = retrieve_for(ticket, message, customer)
    if retrieval.pinned is not None:
        return _pinned_draft(ticket, message, retrieval.pinned, customer, started, lookup)
    generator = load_generator()
    spec = Spec.background(DRAFT_INSTRUCTIONS, DRAFT_TEMPLATE_VERSION, settings.DESK_MAX_DRAFT_TOKENS)
    # The model sees placeholders for the customer's personal data (the stored prompt too); the
    # draft gets the real values back, so the agent reviews a reply that greets them by name.
    prompt = compose(
        question_text(ticket, message),
        retrieval,
        instructions=spec.instructions,
        count_tokens=generator.count_tokens,
        history=tuple(_thread_history(ticket, message)),
        known_names=(ticket.customer_name, *ticket.messages.values_list("from_name", flat=True)),
    )
    answer = async_to_sync(complete)(generator, prompt, spec)
    provenance = {**answer.provenance().fields(), "prompt": prompt.messages}
    if lookup is not None:
        provenance["retrieved"] = provenance["retrieved"] + lookup.retrieved()
    if answer.failure is not None:  # the desk's fallback: a flagged empty version, saying why
        log.warning("event=draft_failed ticket=%s code=%s", ticket.pk, answer.failure.code)
        return failed_draft(ticket, failure_reason(answer.failure), **provenance)
    body = letter_body(answer.text)
    # The body alone is checked: the greeting and sign-off added around it state no facts.
    verification = check(body, answer.prompt.sources, question=question_text(ticket, message))
    flags = (
        draft_flags(answer, retrieval, customer, body) + support_flags(verification) + lookup_flags(lookup)
    )
    usage = answer.usage
    draft = save_version(
        ticket,
        body=letter(ticket, message, with_lookup(lookup, body)),
        replying_to=message,
        **provenance,
        citations=answer.citations(),
        support=lookup_support(lookup) + records(verification, answer.prompt.sources),
        confidence=round(verification.confidence, 3),
        low_confidence=bool(flags),
        flags=flags,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        latency_ms=round((time.perf_counter() - started) * 1000),
    )
    log.info(
        "event=draft_written ticket=%s version=%s low_confidence=%s tokens=%s",
        ticket.pk,
        draft.version,
        draft.low_confidence,
        draft.completion_tokens,
    )
    return draft


def draft_flags(answer: Answer, retrieval: Retrieval, customer: str, body: str) -> list[str]:
    """Why a generated draft is low-confidence, in words for agents (empty: it is not); `body`:
    what the model wrote less any greeting and sign-off."""
    sources = answer.prompt.sources
    flags = []
    if not sources:
        flags.append("No source in the knowledge base matched this mail.")
    elif answer.relevance < settings.DESK_MIN_RELEVANCE:
        flags.append(f"The best source is only weakly related (similarity {answer.relevance:.2f}).")
    if offers_person(answer.text, sources) and sources:
        flags.append("The model says it does not know.")
    flags.extend(_mail_flags(customer))
    if retrieval.excluded:
        flags.append(
            f"{len(retrieval.excluded)} retrieved passage(s) carried instructions and were left out."
        )
    if answer.leaked:
        flags.append("The model started reciting its instructions; that part was removed.")
    if not body:
        flags.append("The model wrote nothing.")
    return flags


def support_flags(verification: Verification) -> list[str]:
    """The flag for sentences the sources do not support, in words for agents (empty: none)."""
    count = sum(1 for s in verification.sentences if s.verdict == "unsupported")
    if not count:
        return []
    sentences = "1 sentence is" if count == 1 else f"{count} sentences are"
    return [f"{sentences} not supported by the sources: check them before sending."]


def unsupported_count(draft: Draft) -> int:
    """Sentences of the draft that its sources do not support (0 where it was not checked)."""
    return sum(1 for r in draft.support or [] if isinstance(r, dict) and r.get("verdict") == "unsupported")


def _mail_flags(customer: str) -> list[str]:
    if carries_instructions(customer):
        return ["The mail contains instructions aimed at an AI; check the reply does not follow them."]
    return []


def _lookup(ticket: Ticket, message: MailMessage, customer: str) -> LookupReply | None:
    """The action the mail asks for, looked up when the mail holds all its parameters (the desk
    does not ask back); the customer's address is the identity the system is told."""
    plan = plan_lookup(customer, texts=[customer], collection=settings.DESK_COLLECTION)
    if plan is None or plan.missing is not None:
        return None
    return run_lookup(plan, visitor=message.from_email, ticket=ticket.pk, caller="desk", actor="system")


def with_lookup(lookup: LookupReply | None, body: str) -> str:
    """The body with the system's answer before the knowledge base's text."""
    if lookup is None or not lookup.verified:
        return body
    return f"{lookup.text}\n\n{body}".strip()


def lookup_support(lookup: LookupReply | None) -> list[dict[str, Any]]:
    return lookup.support() if lookup is not None else []


def lookup_flags(lookup: LookupReply | None) -> list[str]:
    if lookup is None or lookup.verified:
        return []
    return [
        f"Looking this up in {lookup.call.action_name} did not work ({lookup.status.replace('_', ' ')}): "
        "check it yourself."
    ]


def _pinned_draft(
    ticket: Ticket,
    message: MailMessage,
    pinned: PinnedMatch,
    customer: str,
    started: float,
    lookup: LookupReply | None = None,
) -> Draft:
    """A curated answer that matches the mail, as written, with its source (no model asked).
    Its support stays empty, unchecked: a person wrote and approved it, and there are no
    retrieved passages to check it against (its provenance is the pinned answer itself), so a
    check would flag every sentence and teach agents to tick the box without reading."""
    flags = _mail_flags(customer) + lookup_flags(lookup)
    return save_version(
        ticket,
        body=letter(ticket, message, with_lookup(lookup, letter_body(pinned.answer.answer))),
        replying_to=message,
        prompt_template=pinned.template,
        retrieved=pinned.retrieved() + (lookup.retrieved() if lookup else []),
        support=lookup_support(lookup),
        citations=pinned.citations(),
        confidence=round(pinned.score, 3),
        low_confidence=bool(flags),
        flags=flags,
        latency_ms=round((time.perf_counter() - started) * 1000),
    )


def write_draft_or_flag(ticket: Ticket) -> Draft | None:
    """`write_draft`, or when it fails a flagged empty version saying why (`failed_draft`)."""
    try:
        return write_draft(ticket)
    except Exception as exc:  # noqa: BLE001 - recorded on the draft for agents, and logged
        log.warning("event=draft_failed ticket=%s error=%s", ticket.pk, type(exc).__name__)
        return failed_draft(ticket, failure_reason(exc))


def failed_draft(ticket: Ticket, reason: str, **provenance: Any) -> Draft | None:
    """An empty draft version flagged with `reason`: the ticket can go to review, where the agent
    writes the reply (an empty draft is never sent). `provenance`: what the failed attempt was
    given, where it got that far. None when there is nothing to answer."""
    message = latest_question(ticket)
    if message is None:
        return None
    return save_version(
        ticket,
        body="",
        replying_to=message,
        low_confidence=True,
        flags=[f"No draft was written: {reason}. Write the reply yourself, or regenerate it later."],
        **provenance,
    )


def failure_reason(exc: BaseException) -> str:
    """Why drafting failed, in words for agents."""
    if isinstance(exc, InputTooLong):
        return f"the mail is longer than the model accepts ({exc.message.rstrip('.')})"
    if isinstance(exc, ModelBusy):
        return "the model was busy"
    if isinstance(exc, CutOff):
        return "the model stopped writing" if exc.reason == "stalled" else "the model took too long"
    if isinstance(exc, ModelUnavailable):
        return f"the model is not available ({exc.message.rstrip('.')})"
    if isinstance(exc, InferenceError):
        return f"the model failed ({exc.message.rstrip('.')})"
    return f"an error occurred ({type(exc).__name__})"


def edit_check(ticket: Ticket, base: Draft | None, text: str) -> dict[str, Any]:
    """An agent's version of the reply checked against the sources of the draft it edits, as
    the Draft fields it sets (support, confidence, low_confidence, flags), so the flags are those
    of the text that will be sent. A draft that was checked with no source at all (retrieval
    found nothing) keeps being checked, so touching its text does not clear its flags; one never
    checked and without sources (a failed draft, a pinned answer, no draft) is not: there is
    nothing to check the agent's own words against. Costs an embedder call (~20-50 ms)."""
    if base is None:
        return {}
    sources = given_sources(base.retrieved or [])
    # The system's sentences (an action's reply) are supported by the system, not the sources:
    # kept as they were where the edit keeps them, and not checked again.
    system = {r["text"]: r for r in base.support or [] if isinstance(r, dict) and r.get("action_call")}
    if not sources and len(base.support or []) == len(system):
        return {}
    body = letter_body(text)
    kept = [record for sentence, record in system.items() if sentence in body]
    for record in kept:
        body = body.replace(record["text"], " ")
    question = base.replying_to or latest_question(ticket)
    verification = check(body, sources, question=question_text(ticket, question) if question else "")
    flags = support_flags(verification)
    return {
        "support": kept + records(verification, sources),
        "confidence": round(verification.confidence, 3),
        "low_confidence": bool(flags),
        "flags": flags,
    }

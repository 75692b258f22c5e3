"""Every decision on a ticket: the model's draft arriving, an agent editing, approving, rejecting,
regenerating or reassigning. The console, the API and the Celery tasks all call these; each
status change goes through `move`, the ticket's one transition function (assistant/desk/tickets.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from assistant.desk import drafting, outbound, triage
from assistant.desk.inbound import enqueue_processing
from assistant.desk.tickets import ReviewError, current_draft, move
from assistant.models import Draft, OutboundMail, Ticket, TicketEvent, TrainingExample
from core.jobs import enqueue
from core.roles import AGENT, has_role

log = logging.getLogger(__name__)

SWEEP_BATCH = 100  # tickets handled per sweep (beat runs it every 30 s)


def process_ticket(ticket_id: int) -> Draft | None:
    """What the desk does with new mail (a Celery task): triage, then a draft for review, or
    "no reply" when the thread has only automated mail since. Safe to run twice. A triage that
    fails is recorded and skipped; a draft that fails becomes a flagged empty one
    (drafting.write_draft_or_flag): either way the ticket leaves "new" for the review queue."""
    ticket = Ticket.objects.filter(pk=ticket_id).first()
    if ticket is None or ticket.status != Ticket.Status.NEW:
        return None  # erased, or already drafted, approved or set aside
    try:
        triage.triage(ticket)
    except Exception as exc:  # noqa: BLE001 - the draft does not need it; agents see the event
        log.warning("event=triage_failed ticket=%s error=%s", ticket.pk, type(exc).__name__)
        TicketEvent.objects.create(ticket=ticket, action="triage_failed", reason=type(exc).__name__)
    draft = drafting.write_draft_or_flag(ticket)
    _settle(Ticket.objects.get(pk=ticket.pk), draft)
    return draft


def _settle(ticket: Ticket, draft: Draft | None, reason: str = "") -> None:
    """Move a processed ticket on: to review with its draft, or aside with nothing to answer."""
    try:
        if draft is None:
            move(ticket, "nothing_to_answer", reason="Only automated mail: no reply is written.")
        else:
            move(
                ticket,
                "draft_ready",
                reason=reason,
                data={"draft": draft.version, "low_confidence": draft.low_confidence},
            )
    except ReviewError as exc:  # an agent acted meanwhile; the draft is kept as a version
        log.info("event=draft_not_applied ticket=%s reason=%s", ticket.pk, exc.message)
    Ticket.objects.filter(pk=ticket.pk).update(process_attempts=0)


def sweep_stuck_tickets() -> dict[str, int]:
    """Tickets that have sat in "new" for DESK_STUCK_SECONDS (their task was lost, or the worker
    stopped mid-draft): triage and draft queued again; after DESK_PROCESS_ATTEMPTS, a flagged
    empty draft and on to review, where an agent writes the reply. ("sending" is the outbound
    sweep's: due retries are sent, attempts cut off become "unconfirmed".)"""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.DESK_STUCK_SECONDS)
    requeued = gave_up = 0
    stuck = Ticket.objects.filter(status=Ticket.Status.NEW, updated_at__lt=cutoff).order_by("updated_at")
    for ticket in stuck[:SWEEP_BATCH]:
        if ticket.process_attempts >= settings.DESK_PROCESS_ATTEMPTS:
            draft = drafting.failed_draft(
                ticket,
                f"none arrived after {ticket.process_attempts + 1} attempts (is the worker running?)",
            )
            _settle(ticket, draft, reason="No draft arrived in time: given up to an agent.")
            gave_up += 1
            continue
        # Claimed by its updated_at, so two sweeps at once queue it once.
        if Ticket.objects.filter(pk=ticket.pk, status=Ticket.Status.NEW, updated_at=ticket.updated_at).update(
            process_attempts=F("process_attempts") + 1, updated_at=now
        ):
            enqueue_processing(ticket.pk)
            requeued += 1
    return {"requeued_tickets": requeued, "gave_up_tickets": gave_up}


REGENERATABLE = (Ticket.Status.NEW, Ticket.Status.NEEDS_REVIEW, Ticket.Status.FAILED)


def check_regenerate(ticket: Ticket) -> None:
    """Refuse, with the reason, a new draft for a ticket that is being sent, sent or closed.
    Callers that queue the work (API, console) check here first, where the agent sees why."""
    if ticket.status not in REGENERATABLE:
        raise ReviewError(
            "conflict", f"A ticket that is {ticket.status.replace('_', ' ')} cannot get a new draft."
        )


def queue_regenerate(ticket: Ticket, user) -> None:
    """A fresh draft, written by the worker (`regenerate`); refused at once where it cannot be."""
    check_regenerate(ticket)
    enqueue("assistant.desk_regenerate", ticket.pk, user.pk if user else None)


def regenerate(ticket: Ticket, user) -> Draft:
    """A fresh draft from the model (a new version; the old ones stay)."""
    check_regenerate(ticket)
    draft = drafting.write_draft_or_flag(ticket)  # the model still down: a new flagged empty version
    if draft is None:
        raise ReviewError("nothing_to_answer", "This ticket has no customer mail to answer.")
    TicketEvent.objects.create(ticket=ticket, action="regenerated", user=user, data={"draft": draft.version})
    ticket.refresh_from_db()
    if ticket.status == Ticket.Status.NEW:
        move(ticket, "draft_ready", user=user, data={"draft": draft.version})
    return draft


def _check_version(draft: Draft | None, expected_version: int | None) -> None:
    """`expected_version` is the draft version the agent saw (0: none): a newer one is a conflict."""
    if expected_version is not None and (draft.version if draft else 0) != expected_version:
        raise ReviewError("stale", "The draft changed since you opened it; review the new version.")


def edit(ticket: Ticket, user, body: str, *, expected_version: int | None = None) -> Draft:
    """Save an agent's edit as a new version without sending it, checked against the sources
    of the draft it edits (drafting.edit_check)."""
    body = _checked_body(body)
    if ticket.status not in (Ticket.Status.NEEDS_REVIEW, Ticket.Status.FAILED):
        raise ReviewError("conflict", f"A ticket that is {ticket.status} cannot be edited.")
    checked, support = _check_edit(ticket, body)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        base = current_draft(ticket)
        _check_version(base, expected_version)
        _check_same(base, checked)
        draft = _edited_version(ticket, base, user, body, support)
    TicketEvent.objects.create(ticket=ticket, action="edited", user=user, data={"draft": draft.version})
    return draft


def _checked_body(body: Any) -> str:
    if not isinstance(body, str) or not body.strip():
        raise ReviewError("bad_request", "The reply must be non-empty text.", 400)
    if len(body) > settings.DESK_MAX_REPLY_CHARS:
        raise ReviewError(
            "too_large", f"The reply is longer than {settings.DESK_MAX_REPLY_CHARS} characters.", 413
        )
    return body.strip()


def _check_edit(ticket: Ticket, body: str | None) -> tuple[Draft | None, dict[str, Any]]:
    """The draft an edit is based on, and the edit's support against that draft's sources (the
    Draft fields, empty for no edit). Checked before the ticket is locked: an embedder call is
    not something other agents should wait on the row for."""
    base = current_draft(ticket)
    if body is None:
        return base, {}
    if base is not None and body == base.body.strip():
        # The same words, the same verdicts: saving without a change must not clear the flags.
        return base, {f: getattr(base, f) for f in ("support", "confidence", "low_confidence", "flags")}
    return base, drafting.edit_check(ticket, base, body)


def _check_same(current: Draft | None, checked: Draft | None) -> None:
    """The edit was checked against the sources of `checked`: a version that arrived meanwhile
    would make that check (and the edit) about another draft."""
    if (current.pk if current else None) != (checked.pk if checked else None):
        raise ReviewError("stale", "The draft changed since you opened it; review the new version.")


def _edited_version(ticket: Ticket, base: Draft | None, user, body: str, support: dict[str, Any]) -> Draft:
    provenance = {}
    if base is not None:  # the sources stay visible: an edit keeps what the draft was built on
        provenance = {
            "replying_to": base.replying_to,
            "model_version": base.model_version,
            "prompt_template": base.prompt_template,
            "retrieved": base.retrieved,
            "citations": base.citations,
        }
    return drafting.save_version(ticket, body=body, author=user, **provenance, **support)


def approve(
    ticket: Ticket,
    user,
    body: str | None = None,
    *,
    expected_version: int | None = None,
    confirmed: bool = False,
) -> OutboundMail:
    """Approve the current draft (or `body`, saved first as the agent's version, checked against
    the sources) and send it. The ticket moves to "sending" and an OutboundMail is created in one
    transaction; the mail goes out after it commits. Approving twice, or two agents at once: one
    wins, the other gets a conflict and nothing is sent twice.

    A version with sentences the sources do not support is only sent when the agent `confirmed`
    they checked them; otherwise it is refused ("unchecked_sentences") and nothing is sent, but
    an edit is kept as a version, so the agent sees its flags without losing their words."""
    if body is not None:
        body = _checked_body(body)
    checked, support = _check_edit(ticket, body)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        draft = current_draft(ticket)
        _check_version(draft, expected_version)
        if body is not None and (draft is None or body != draft.body.strip()):
            _check_same(draft, checked)
            draft, edited = _edited_version(ticket, draft, user, body, support), True
        else:
            edited = False
            if draft is None:
                raise ReviewError("no_draft", "There is no draft to approve yet; write the reply.")
            if not draft.body.strip():  # a draft that failed: never send an empty mail
                raise ReviewError("no_draft", "The draft is empty; write the reply before approving.")
        existing = OutboundMail.objects.filter(draft=draft).first()
        # Approving a failed send again sends what was confirmed the first time.
        flagged = drafting.unsupported_count(draft) if existing is None else 0
        if flagged and not confirmed:
            refusal = _unchecked(draft, flagged, edited)
        else:
            refusal = None
            mail = _send(ticket, draft, user, existing, flagged)
    if refusal is not None:  # raised after the commit: the edit stays, nothing is sent
        raise refusal
    log.info(
        "event=reply_approved ticket=%s draft=%s user=%s", ticket.pk, draft.version, user.pk if user else None
    )
    return mail


def _unchecked(draft: Draft, flagged: int, edited: bool) -> ReviewError:
    sentences = "1 sentence is" if flagged == 1 else f"{flagged} sentences are"
    saved = f"Your edit was saved as version {draft.version}. " if edited else ""
    return ReviewError(
        "unchecked_sentences",
        f"{saved}Not sent: {sentences} not found in the sources (version {draft.version}). "
        "Check them, then confirm “I have checked the flagged sentences” and approve again.",
        409,
        version=draft.version,
        unsupported=flagged,
    )


def _send(ticket: Ticket, draft: Draft, user, existing: OutboundMail | None, flagged: int) -> OutboundMail:
    """The approval recorded (with how many flagged sentences the agent confirmed) and the mail
    queued once the transaction commits."""
    data = {"draft": draft.version, **({"confirmed_unsupported": flagged} if flagged else {})}
    move(ticket, "approve", user=user, data=data)
    if existing is not None:  # approving a failed send again: the same mail, the same Message-ID
        mail = outbound.retry_by_hand(existing)
    else:
        mail = outbound.prepare(ticket, draft, user)
        _keep_for_training(ticket, draft, user)
    transaction.on_commit(lambda: outbound.enqueue(mail.pk))
    return mail


def _keep_for_training(ticket: Ticket, draft: Draft, user) -> None:
    question = draft.replying_to
    if question is None:
        return
    generated = ticket.drafts.filter(author__isnull=True, replying_to=question).order_by("-version").first()
    TrainingExample.objects.create(
        source=TrainingExample.Source.EMAIL,
        ticket=ticket,
        draft=draft,
        question=drafting.question_text(ticket, question),
        answer=draft.body,
        context=[
            {"role": role, "content": text} for role, text in drafting._thread_history(ticket, question)
        ],
        sources=draft.citations,
        model_draft_unchanged=draft.author_id is None
        or (generated is not None and generated.body.strip() == draft.body),
        approved_by=user,
        customer_email=ticket.customer_email,
    )


def reject(ticket: Ticket, user, reason: Any) -> Ticket:
    if not isinstance(reason, str) or not reason.strip():
        raise ReviewError("bad_request", "Say why the draft is rejected (a reason is required).", 400)
    return move(ticket, "reject", user=user, reason=reason.strip()[:2000])


def reassign(ticket: Ticket, user, assignee) -> Ticket:
    if assignee is not None and not has_role(assignee, AGENT):
        raise ReviewError("bad_request", "Tickets can only be assigned to agents.", 400)
    before = ticket.assigned_to
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(assigned_to=assignee)
        TicketEvent.objects.create(
            ticket=ticket,
            action="reassigned",
            user=user,
            data={
                "from": before.get_username() if before else None,
                "to": assignee.get_username() if assignee else None,
            },
        )
    ticket.assigned_to = assignee
    return ticket

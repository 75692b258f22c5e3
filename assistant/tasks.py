"""Celery tasks of the assistant app: the website assistant's scheduled purge, the email desk's
work (triage and drafts, sending, mailbox polling, the sweeper), the drift statistics and the
console's fine-tune. `manage.py serve` embeds a worker with beat; each task body is a plain
function that tests call directly.

The one module that imports the faces' actions: code that starts a job queues it by name
(`core.jobs.enqueue("assistant.desk_regenerate", ...)`), and the names here are the contract."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from assistant.chat.privacy import purge_expired
from assistant.desk import imap, inbound, outbound, review
from assistant.desk.tickets import ReviewError, get_ticket
from assistant.insights import drift


@shared_task(name="assistant.purge_expired_conversations")
def purge_expired_conversations() -> int:
    return purge_expired()


@shared_task(name="assistant.desk_process_inbound")
def desk_process_inbound(inbound_id: int) -> str:
    """Parse a stored mail (in a child process with MAIL_PARSE_TIMEOUT) and file it into a ticket."""
    return inbound.process_stored(inbound_id)


@shared_task(name="assistant.desk_process_ticket")
def desk_process_ticket(ticket_id: int) -> int | None:
    draft = review.process_ticket(ticket_id)
    return draft.pk if draft else None


@shared_task(name="assistant.desk_regenerate")
def desk_regenerate(ticket_id: int, user_id: int | None) -> int | None:
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        return review.regenerate(get_ticket(ticket_id), user).pk
    except ReviewError:
        return None


@shared_task(name="assistant.desk_send_reply")
def desk_send_reply(outbound_id: int) -> str:
    return outbound.deliver(outbound_id)


@shared_task(name="assistant.desk_sweep")
def desk_sweep() -> dict:
    """Everything the desk left on the way: mail stored but not processed, tickets left in "new"
    (both queued again, then given up where agents see them), replies due or cut off."""
    return {**inbound.sweep_received(), **review.sweep_stuck_tickets(), **outbound.sweep()}


@shared_task(name="assistant.desk_poll_mailboxes")
def desk_poll_mailboxes() -> dict:
    return imap.poll_mailboxes()


@shared_task(name="assistant.record_question_sample")
def record_question_sample(answer_id: int) -> int | None:
    sample = drift.record_sample(answer_id)
    return sample.pk if sample else None


@shared_task(name="assistant.check_drift")
def check_drift() -> list[dict]:
    return [drift.report_dict(report) for report in drift.check_drift()]


@shared_task(name="assistant.finetune")
def finetune(max_steps: int | None = None, promote_if_better: bool = False, actor: str = "system") -> int:
    """A fine-tune started from the console's models page (the `finetune` command does the same)."""
    # Imported here: the training code loads torch and transformers, which a worker (or an eager
    # one-process setup) should not pay for until someone fine-tunes.
    from assistant.learning.loop import run_finetune
    from inference.finetune import FineTuneConfig

    run = run_finetune(
        "approved",
        config=FineTuneConfig(max_steps=max_steps),
        promote_if_better=promote_if_better,
        actor=actor,
    )
    return run.pk

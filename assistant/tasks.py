"""Celery tasks of the assistant app: the website assistant's scheduled purge and the email desk's
work (triage and drafts, sending, mailbox polling, the sweeper). `manage.py serve` embeds a
worker with beat; each task body is a plain function that tests call directly."""

from __future__ import annotations

from celery import shared_task

from assistant.chat.privacy import purge_expired


@shared_task(name="assistant.purge_expired_conversations")
def purge_expired_conversations() -> int:
    return purge_expired()


@shared_task(name="assistant.desk_process_inbound")
def desk_process_inbound(inbound_id: int) -> str:
    """Parse a stored mail (in a child process with MAIL_PARSE_TIMEOUT) and file it into a ticket."""
    from assistant.desk.inbound import process_stored

    return process_stored(inbound_id)


@shared_task(name="assistant.desk_process_ticket")
def desk_process_ticket(ticket_id: int) -> int | None:
    from assistant.desk.review import process_ticket

    draft = process_ticket(ticket_id)
    return draft.pk if draft else None


@shared_task(name="assistant.desk_regenerate")
def desk_regenerate(ticket_id: int, user_id: int | None) -> int | None:
    from django.contrib.auth import get_user_model

    from assistant.desk.review import ReviewError, get_ticket, regenerate

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        return regenerate(get_ticket(ticket_id), user).pk
    except ReviewError:
        return None


@shared_task(name="assistant.desk_send_reply")
def desk_send_reply(outbound_id: int) -> str:
    from assistant.desk.outbound import deliver

    return deliver(outbound_id)


@shared_task(name="assistant.desk_sweep")
def desk_sweep() -> dict:
    """Everything the desk left on the way: mail stored but not processed, tickets left in "new"
    (both queued again, then given up where agents see them), replies due or cut off."""
    from assistant.desk.inbound import sweep_received
    from assistant.desk.outbound import sweep
    from assistant.desk.review import sweep_stuck_tickets

    return {**sweep_received(), **sweep_stuck_tickets(), **sweep()}


@shared_task(name="assistant.desk_poll_mailboxes")
def desk_poll_mailboxes() -> dict:
    from assistant.desk.imap import poll_mailboxes

    return poll_mailboxes()


@shared_task(name="assistant.record_question_sample")
def record_question_sample(answer_id: int) -> int | None:
    from assistant.insights.drift import record_sample

    sample = record_sample(answer_id)
    return sample.pk if sample else None


@shared_task(name="assistant.check_drift")
def check_drift() -> list[dict]:
    from assistant.insights.drift import check_drift as run_check
    from assistant.insights.drift import report_dict

    return [report_dict(report) for report in run_check()]


@shared_task(name="assistant.finetune")
def finetune(max_steps: int | None = None, promote_if_better: bool = False, actor: str = "system") -> int:
    """A fine-tune started from the console's models page (the `finetune` command does the same)."""
    from assistant.learning.loop import run_finetune
    from inference.finetune import FineTuneConfig

    run = run_finetune(
        "approved",
        config=FineTuneConfig(max_steps=max_steps),
        promote_if_better=promote_if_better,
        actor=actor,
    )
    return run.pk

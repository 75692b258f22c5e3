"""Scheduled work of the website assistant (run by Celery beat; `manage.py serve` embeds it)."""

from __future__ import annotations

from celery import shared_task

from assistant.privacy import purge_expired


@shared_task(name="assistant.purge_expired_conversations")
def purge_expired_conversations() -> int:
    return purge_expired()

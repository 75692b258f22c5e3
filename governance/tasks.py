"""Celery tasks of the project as a whole (found by config/celery.py's autodiscovery): the daily
retention purge on the beat schedule (CELERY_BEAT_SCHEDULE in config/settings.py)."""

from __future__ import annotations

from celery import shared_task

from governance.retention import purge_expired


# The name is older than governance/: queued messages and beat schedules use it.
@shared_task(name="config.purge_retention")
def purge_retention() -> dict[str, int]:
    return purge_expired(actor="beat")

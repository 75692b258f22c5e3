"""Queueing long work by task name.

Code that starts a job names it (`enqueue("assistant.desk_regenerate", ticket.pk, user.pk)`)
instead of importing the task function, so that only each app's `tasks.py` imports its actions
and no actions module imports a tasks module (ARCHITECTURE.md: tasks enqueue by name). Task names
are the stable contract: queued messages outlive a deploy.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from celery.result import AsyncResult


def enqueue(name: str, *args: Any, countdown: float | None = None) -> AsyncResult:
    """Queue task `name` with `args`. With `CELERY_TASK_ALWAYS_EAGER` (a one-process setup) the
    task runs now, as `task.delay` would: its module is imported by the app's autodiscovery."""
    app = current_app
    if app.conf.task_always_eager:
        app.loader.import_default_modules()
        return app.tasks[name].apply_async(args, countdown=countdown)
    return app.send_task(name, args=args, countdown=countdown)

"""The learning loop's writes started by people: a fine-tune queued from the console (the
worker runs `assistant.learning.loop.run_finetune`; the `finetune` command runs it in place).
Nothing here imports the training code: the web process starts without torch."""

from __future__ import annotations

from core.errors import DomainError
from core.jobs import enqueue
from inference.models import FineTuneRun


def do_queue_finetune(*, max_steps: int | None, promote_if_better: bool, actor: str) -> None:
    """Queue one fine-tune (task `assistant.finetune`), refused while another is running."""
    if FineTuneRun.objects.filter(status=FineTuneRun.Status.RUNNING).exists():
        raise DomainError("finetune_running", "A fine-tune is already running; wait for it to finish.", 409)
    enqueue("assistant.finetune", max_steps, promote_if_better, actor)

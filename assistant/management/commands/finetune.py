"""`python manage.py finetune --dataset approved|PATH.jsonl [--max-steps N] [--promote-if-better]`

LoRA fine-tune of the active chat model on human-approved answers (or a JSONL file of
`{"messages": [...]}` chat examples), evaluated against the active model on a held-out split;
the result is registered as a candidate version. Progress goes to stderr; the run's outcome
(dataset, losses, metrics, decision) is printed to stdout as one JSON object. Exit status 1 when
the run failed (the reason is in the JSON's "error").
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from assistant.learning.loop import LoopError, run_finetune
from inference.finetune import FineTuneConfig
from inference.management.commands.models import cli_actor


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Fine-tune the active chat model (LoRA) on approved answers; evaluate; register a candidate."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", default="approved", help="'approved' (the default) or a JSONL path.")
        parser.add_argument("--max-steps", type=int, default=None, help="Stop after N optimiser steps.")
        parser.add_argument("--epochs", type=float, default=2.0)
        parser.add_argument("--batch-size", type=int, default=4)
        parser.add_argument("--learning-rate", type=float, default=3e-4)
        parser.add_argument("--rank", type=int, default=8)
        parser.add_argument("--max-length", type=int, default=1024, help="Longer examples are left out.")
        parser.add_argument("--eval-fraction", type=_fraction, default=0.2)
        parser.add_argument("--eval-max-tokens", type=int, default=96)
        parser.add_argument(
            "--promote-if-better", action="store_true", help="Activate the candidate if it wins."
        )

    def handle(self, *args, **options) -> None:
        if options["max_steps"] is not None and options["max_steps"] < 1:
            raise CommandError("--max-steps must be at least 1.")
        config = FineTuneConfig(
            max_steps=options["max_steps"],
            epochs=options["epochs"],
            batch_size=options["batch_size"],
            learning_rate=options["learning_rate"],
            rank=options["rank"],
            max_length=options["max_length"],
        )
        try:
            run = run_finetune(
                options["dataset"],
                config=config,
                eval_fraction=options["eval_fraction"],
                eval_max_tokens=options["eval_max_tokens"],
                promote_if_better=options["promote_if_better"],
                actor=cli_actor(),
                progress=lambda text: print(text, file=sys.stderr, flush=True),
            )
        except LoopError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from exc
        out = {
            "run": run.pk,
            "status": run.status,
            "error": run.error or None,
            "dataset": run.dataset_stats,
            "steps": run.step,
            "seconds": run.seconds,
            "loss_first": run.losses[0] if run.losses else None,
            "loss_last": run.losses[-1] if run.losses else None,
            # One step's loss is noisy at small batches: the mean of the last five says more.
            "loss_last5_mean": round(sum(run.losses[-5:]) / len(run.losses[-5:]), 4) if run.losses else None,
            "candidate": {"id": run.candidate.pk, "key": run.candidate.key} if run.candidate else None,
            "baseline": {"id": run.baseline.pk, "key": run.baseline.key} if run.baseline else None,
            "metrics": {k: run.metrics.get(k) for k in ("baseline", "candidate", "better", "why")},
            "decision": run.decision,
        }
        self.stdout.write(json.dumps(out, indent=2))
        if run.status != run.Status.SUCCEEDED:
            raise CommandError(run.error)

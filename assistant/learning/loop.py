"""One turn of the learning loop: build the dataset, train a LoRA adapter on the active chat
model, register it as a candidate, evaluate it against the active model on the held-out split,
write its model card, and promote it only if it is better (when asked to).

`python manage.py finetune` runs this; its FineTuneRun row shows progress and losses while it
runs (the console's models page reads it) and keeps the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from assistant.learning.dataset import Dataset, DatasetError, build_dataset, load_approved, load_jsonl
from assistant.learning.evaluation import evaluate, is_better
from core.errors import DomainError
from inference.actions import do_activate_model_version, do_register_model_version
from inference.backends.local import LocalTextGenerator
from inference.finetune import FineTuneConfig, FineTuneError, train_lora
from inference.models import FineTuneRun, ModelVersion
from inference.services import get_embedder

log = logging.getLogger(__name__)

MIN_TRAIN_EXAMPLES = 2


class LoopError(DomainError):
    """A fine-tune that cannot start (code "finetune_refused")."""

    def __init__(self, message: str) -> None:
        super().__init__("finetune_refused", message)


def active_chat_version() -> ModelVersion:
    version = ModelVersion.objects.filter(
        kind=ModelVersion.Kind.CHAT, status=ModelVersion.Status.ACTIVE
    ).first()
    if version is None or not version.path or not Path(version.path, "config.json").exists():
        raise LoopError(
            "No active local chat model to fine-tune: run `python manage.py prepare_models` "
            "(a remote INFERENCE_URL model is fine-tuned where it is served)."
        )
    return version


def _embed(texts: list[str]):
    return get_embedder().embed(texts)


def _generator(version: ModelVersion):
    """A local generator for exactly this version (base folder plus its adapter, if any)."""
    generator = LocalTextGenerator(model_dir=version.path, adapter_dir=version.adapter or None)
    generator.model_version = version.key
    return generator


def load_dataset(dataset: str, eval_fraction: float) -> Dataset:
    candidates = load_approved() if dataset == "approved" else load_jsonl(dataset)
    return build_dataset(candidates, eval_fraction=eval_fraction, embed=_embed)


def run_finetune(
    dataset: str = "approved",
    *,
    config: FineTuneConfig | None = None,
    eval_fraction: float = 0.2,
    eval_max_tokens: int = 96,
    promote_if_better: bool = False,
    actor: str = "system",
    progress: Callable[[str], None] | None = None,
) -> FineTuneRun:
    """Run the loop; returns the run (status failed with the reason when a step fails)."""
    config = config or FineTuneConfig()
    say = progress or (lambda text: None)
    base = active_chat_version()
    run = FineTuneRun.objects.create(
        actor=actor[:200], dataset=str(dataset)[:500], config=config.as_dict(), baseline=base
    )
    try:
        data = load_dataset(dataset, eval_fraction)
        run.dataset_stats = data.stats()
        run.save(update_fields=["dataset_stats"])
        say(f"dataset: {run.dataset_stats}")
        if len(data.train) < MIN_TRAIN_EXAMPLES:
            raise LoopError(
                f"Only {len(data.train)} training example(s) passed the checks "
                f"(left out: {run.dataset_stats['excluded'] or 'none'}); "
                f"at least {MIN_TRAIN_EXAMPLES} are needed."
            )
        # Named by id and time: a database reset restarts ids, and a run never overwrites another.
        folder = Path(settings.FINETUNE_DIR) / f"run-{run.pk}-{run.created_at:%Y%m%d-%H%M%S}"
        data.write(folder)

        def on_step(step: int, total: int, loss: float) -> None:
            run.step, run.total_steps = step, total
            run.losses.append(round(loss, 4))
            run.save(update_fields=["step", "total_steps", "losses"])
            say(f"step {step}/{total} loss {loss:.4f}")

        result = train_lora(
            base.path,
            [e.training_messages() for e in data.train],
            folder / "adapter",
            config,
            progress=on_step,
        )
        run.seconds = round(result.seconds, 1)
        run.save(update_fields=["seconds"])
        base_name = base.name.split("+", 1)[0]
        candidate = do_register_model_version(
            key=f"chat:{base_name}+lora@{result.sha256[:12]}",
            kind=ModelVersion.Kind.CHAT,
            activate_if_none=False,
            actor=actor,
            name=f"{base_name}+lora",
            base=base.key if not base.adapter else base.base,
            adapter=str(result.adapter_dir),
            path=base.path,
            sha256=result.sha256,
            dtype=base.dtype,
            source=f"finetune:run-{run.pk}",
        )
        run.candidate = candidate
        run.save(update_fields=["candidate"])

        say(f"evaluating on {len(data.eval)} held-out question(s)")
        metrics = _evaluate(base, candidate, data, eval_max_tokens)
        better, why = (
            is_better(metrics["candidate"], metrics["baseline"])
            if data.eval
            else (False, "no held-out questions")
        )
        metrics["better"], metrics["why"] = better, why
        run.metrics = metrics
        candidate.metrics = {**metrics["candidate"], "baseline": metrics["baseline"], "better": better}
        candidate.card = model_card(candidate, run, data, result)
        candidate.save(update_fields=["metrics", "card"])
        (Path(result.adapter_dir) / "README.md").write_text(candidate.card)  # replaces peft's template
        if promote_if_better and better:
            do_activate_model_version(candidate, actor=actor, reason=f"fine-tune run {run.pk}: {why}")
            run.decision = FineTuneRun.Decision.PROMOTED
        else:
            run.decision = FineTuneRun.Decision.KEPT if data.eval else FineTuneRun.Decision.PENDING
        run.status = FineTuneRun.Status.SUCCEEDED
    except (LoopError, DatasetError, FineTuneError) as exc:
        run.status, run.error = FineTuneRun.Status.FAILED, exc.message
        log.warning("event=finetune_failed run=%s reason=%s", run.pk, exc.__class__.__name__)
    except Exception as exc:
        run.status, run.error = FineTuneRun.Status.FAILED, f"{exc.__class__.__name__}: {exc}"
        log.exception("event=finetune_failed run=%s", run.pk)
    run.finished_at = timezone.now()
    run.save()
    return run


def _evaluate(base: ModelVersion, candidate: ModelVersion, data: Dataset, max_tokens: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, version in (("baseline", base), ("candidate", candidate)):
        result = evaluate(_generator(version), data.eval, _embed, max_tokens=max_tokens)
        out[name] = result.as_dict()
        out[f"{name}_answers"] = result.answers[:50]
    return out


def model_card(version: ModelVersion, run: FineTuneRun, data: Dataset, result) -> str:
    """The version's model card, Markdown (templates/learning/model_card.md; shown as text)."""
    names = ("answer_similarity", "citation_accuracy", "refusal_accuracy", "score")
    baseline, candidate = run.metrics.get("baseline", {}), run.metrics.get("candidate", {})
    return render_to_string(
        "learning/model_card.md",
        {
            "version": version,
            "adapter": "/".join(Path(version.adapter).parts[-2:]),  # run folder / adapter
            "run": run,
            "result": result,
            "stats": data.stats(),
            "rows": [(n, baseline.get(n, "-"), candidate.get(n, "-")) for n in names],
            "made": timezone.now(),
        },
    )

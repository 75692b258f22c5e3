"""The model registry in the console: versions with their model cards and evaluation, fine-tune
runs with progress and loss, and one-click promote, rollback and fine-tune (admins). Auditors
read everything here and change nothing."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from assistant.learning.actions import do_queue_finetune
from core.errors import DomainError
from core.roles import ADMIN, AUDITOR, has_role, role_required
from inference.actions import RegistryError, do_activate_model_version, do_rollback
from inference.models import FineTuneRun, ModelEvent, ModelVersion


def loss_points(losses: list[float], width: int = 240, height: int = 48) -> str:
    """An SVG polyline's points for a loss curve (scaled to the box; empty for < 2 points)."""
    if len(losses) < 2:
        return ""
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    step = width / (len(losses) - 1)
    return " ".join(f"{i * step:.1f},{height - (v - low) / span * height:.1f}" for i, v in enumerate(losses))


@require_GET
@role_required(ADMIN, AUDITOR)
def models_page(request: HttpRequest) -> HttpResponse:
    runs = list(FineTuneRun.objects.select_related("candidate", "baseline")[:20])
    for run in runs:
        run.points = loss_points(run.losses)
    return render(
        request,
        "console/models.html",
        {
            "versions": ModelVersion.objects.filter(kind=ModelVersion.Kind.CHAT),
            "runs": runs,
            "events": ModelEvent.objects.select_related("version", "previous")[:20],
            "can_change": has_role(request.user, ADMIN),
            "running": any(r.status == FineTuneRun.Status.RUNNING for r in runs),
        },
    )


@require_GET
@role_required(ADMIN, AUDITOR)
def version_page(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=version_id)
    run = version.finetune_runs.first()
    return render(
        request,
        "console/model_version.html",
        {"version": version, "run": run, "can_change": has_role(request.user, ADMIN)},
    )


@require_POST
@role_required(ADMIN)
def activate(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=version_id)

    def change() -> str:
        do_activate_model_version(version, actor=request.user, reason=_reason(request))
        return f"{version.key} is now the active {version.kind} model."

    return _changed(request, change)


@require_POST
@role_required(ADMIN)
def rollback(request: HttpRequest) -> HttpResponse:
    def change() -> str:
        version = do_rollback("chat", actor=request.user, reason=_reason(request))
        return f"Rolled back: {version.key} is active again."

    return _changed(request, change)


def _reason(request: HttpRequest) -> str:
    return request.POST.get("reason", "")[:1000]


def _changed(request: HttpRequest, change: Callable[[], str]) -> HttpResponse:
    """Make a change and say how it went (its success message or the refusal's) on the models page."""
    try:
        messages.success(request, change())
    except (RegistryError, DomainError) as exc:
        messages.error(request, exc.message)
    return redirect("console-models")


@require_POST
@role_required(ADMIN)
def start_finetune(request: HttpRequest) -> HttpResponse:
    text = request.POST.get("max_steps", "").strip()
    try:
        max_steps = int(text) if text else None  # empty: two epochs
    except ValueError:
        max_steps = 0  # refused below, like any number out of range
    if max_steps is not None and not 1 <= max_steps <= 10000:
        messages.error(request, "Steps must be between 1 and 10000 (or empty for two epochs).")
        return redirect("console-models")

    def change() -> str:
        do_queue_finetune(
            max_steps=max_steps,
            promote_if_better=request.POST.get("promote_if_better") == "on",
            actor=f"user:{request.user.get_username()}",
        )
        return "Fine-tune queued: its progress appears below."

    return _changed(request, change)

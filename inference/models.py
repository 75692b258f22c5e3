"""The model registry: one row per prepared model version; every generated output points here."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat"
        EMBEDDING = "embedding"
        IMAGE = "image"

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"

    # Stable identity used in usage records and API output, e.g.
    # "chat:SmolLM2-135M-Instruct@9f2c1d0a1b2c" (name @ first 12 hex of the weights' sha256).
    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)
    base = models.CharField(max_length=200, blank=True)
    adapter = models.CharField(max_length=500, blank=True)
    dtype = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=500, blank=True)
    path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # The model card (Markdown): data used, metrics, intended use, limits. Written when a version
    # is registered; fine-tuned versions get theirs from the evaluation gate.
    card = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "-created_at"]
        constraints = [
            # At most one active version per kind: activation swaps atomically.
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(status="active"),
                name="one_active_model_per_kind",
            )
        ]
        permissions = [("activate_modelversion", "Can activate and roll back model versions")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def files_present(self) -> bool:
        """False when the version names a folder that is not on disk (moved, deleted, or
        prepared on another machine); True for versions without files (remote models)."""
        return (not self.path or Path(self.path).exists()) and (
            not self.adapter or Path(self.adapter).exists()
        )


class ModelEvent(models.Model):
    """One entry in the registry's audit trail: who changed which version, when and why.

    Rollback reads this trail: the version to go back to is `previous` of the event that made
    the current version active. Rows are only ever added.
    """

    class Action(models.TextChoices):
        REGISTERED = "registered"
        ACTIVATED = "activated"
        RETIRED = "retired"
        ROLLED_BACK = "rolled_back"

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=16, choices=Action.choices)
    # The version that was active for this kind just before this event (activations only).
    previous = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who acted, as text that survives the user's deletion: "user:alice", "cli:deploy", "prepare_models".
    actor = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.version.key} by {self.actor}"


class FineTuneRun(models.Model):
    """One `finetune` run: its data, its progress and losses, the candidate it produced, the
    evaluation against the model active at the time, and what was decided."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Decision(models.TextChoices):
        PENDING = "pending"  # not evaluated (yet)
        PROMOTED = "promoted"
        KEPT = "kept"  # the candidate did not win: the active version stays

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    decision = models.CharField(max_length=16, choices=Decision.choices, default=Decision.PENDING)
    actor = models.CharField(max_length=200)
    dataset = models.CharField(max_length=500)  # "approved" or the JSONL path
    config = models.JSONField(default=dict, blank=True)
    dataset_stats = models.JSONField(default=dict, blank=True)  # sizes, sources, exclusions
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    losses = models.JSONField(default=list, blank=True)  # per optimiser step
    seconds = models.FloatField(null=True, blank=True)
    baseline = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    candidate = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="finetune_runs"
    )
    metrics = models.JSONField(default=dict, blank=True)  # {"candidate": {...}, "baseline": {...}}
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"fine-tune #{self.pk} ({self.status})"

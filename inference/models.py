"""The model registry: one row per prepared model version; every generated output points here."""

from __future__ import annotations

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

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

"""Writes to the model registry."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from inference.models import ModelVersion


def do_register_model_version(
    *, key: str, kind: str, activate_if_none: bool = True, **fields: Any
) -> ModelVersion:
    """Record a prepared model (idempotent by key); make it active if its kind has none yet."""
    with transaction.atomic():
        version, _ = ModelVersion.objects.get_or_create(key=key, defaults={"kind": kind, **fields})
        has_active = ModelVersion.objects.filter(kind=kind, status=ModelVersion.Status.ACTIVE).exists()
        if activate_if_none and not has_active:
            version.status = ModelVersion.Status.ACTIVE
            version.activated_at = timezone.now()
            version.save(update_fields=["status", "activated_at"])
    return version


def version_for_key(key: str, kind: str) -> ModelVersion:
    """The registry row behind a usage record's model key (a remote model may be new to us)."""
    version, _ = ModelVersion.objects.get_or_create(
        key=key, defaults={"kind": kind, "name": key.split(":", 1)[-1], "source": "reported"}
    )
    return version

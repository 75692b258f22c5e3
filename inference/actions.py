"""Writes to the model registry: registering, activating, retiring and rolling back versions.

Every change is one transaction that locks the kind's rows, moves the statuses and writes one
ModelEvent (the audit trail rollback reads). The running processes notice within
services.ACTIVE_CHECK_SECONDS; this process at once, when the transaction commits.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.audit import actor_fields
from inference import services
from inference.errors import CodedError
from inference.models import ModelEvent, ModelVersion

log = logging.getLogger(__name__)

# Who acts on the registry: a user (admin, staff pages) or a text such as "cli:deploy".
Actor = AbstractBaseUser | str


class RegistryError(CodedError):
    """A registry change that was refused; `code` is stable, `message` is for people. As a
    DomainError: 409, the registry's state forbids the change (404 for an unknown version)."""

    code = "registry_error"
    message = "The model registry refused the change."
    default_status = 409


class VersionNotFound(RegistryError):
    code, message, default_status = "version_not_found", "No such model version.", 404


class AlreadyActive(RegistryError):
    code, message = "already_active", "That version is already active; nothing changed."


class ModelFilesMissing(RegistryError):
    code, message = "model_files_missing", "The version's model files are not on disk."


class NothingToRollBack(RegistryError):
    code, message = "nothing_to_roll_back", "There is no earlier version to roll back to."


class CannotRetireActive(RegistryError):
    code = "cannot_retire_active"
    message = "The active version cannot be retired; activate another version instead."


def _record(
    version: ModelVersion,
    action: str,
    actor: Actor,
    *,
    previous: ModelVersion | None = None,
    reason: str = "",
) -> ModelEvent:
    return ModelEvent.objects.create(
        version=version, action=action, previous=previous, reason=reason, **actor_fields(actor)
    )


def _forget_active_on_commit() -> None:
    # This process picks up the change at once; other processes within ACTIVE_CHECK_SECONDS.
    transaction.on_commit(services.forget_active)


def do_register_model_version(
    *, key: str, kind: str, activate_if_none: bool = True, actor: Actor = "system", **fields: Any
) -> ModelVersion:
    """Record a prepared model (idempotent by key); make it active if its kind has none yet."""
    with transaction.atomic():
        version, created = ModelVersion.objects.get_or_create(key=key, defaults={"kind": kind, **fields})
        if created:
            _record(version, ModelEvent.Action.REGISTERED, actor)
        has_active = ModelVersion.objects.filter(kind=kind, status=ModelVersion.Status.ACTIVE).exists()
        if activate_if_none and not has_active:
            version.status = ModelVersion.Status.ACTIVE
            version.activated_at = timezone.now()
            version.save(update_fields=["status", "activated_at"])
            _record(version, ModelEvent.Action.ACTIVATED, actor, reason=f"first {kind} model")
            _forget_active_on_commit()
    return version


def version_for_key(key: str, kind: str) -> ModelVersion:
    """The registry row behind a usage record's model key (a remote model may be new to us)."""
    version, created = ModelVersion.objects.get_or_create(
        key=key, defaults={"kind": kind, "name": key.split(":", 1)[-1], "source": "reported"}
    )
    if created:
        _record(version, ModelEvent.Action.REGISTERED, "usage-report")
    return version


def find_version(id_or_key: str | int) -> ModelVersion:
    """A version by numeric id or by key (as `models list` shows them)."""
    text = str(id_or_key).strip()
    lookup = {"pk": int(text)} if text.isdigit() else {"key": text}
    try:
        return ModelVersion.objects.get(**lookup)
    except ModelVersion.DoesNotExist:
        raise VersionNotFound(f"No model version with id or key {text!r}.") from None


def _swap_active(kind: str, target_pk: int, action: str, actor: Actor, reason: str) -> ModelVersion:
    """Inside a transaction holding the kind's rows: retire the active version, activate the
    target, record one event. The statement order keeps the one-active-per-kind constraint true
    at every step."""
    target = ModelVersion.objects.get(pk=target_pk)
    current = ModelVersion.objects.filter(kind=kind, status=ModelVersion.Status.ACTIVE).first()
    if current is not None and current.pk == target.pk:
        raise AlreadyActive(f"{target.key} is already the active {kind} model; nothing changed.")
    if not target.files_present:
        raise ModelFilesMissing(
            f"{target.key} cannot be activated: its files are missing at {target.path}. "
            "Prepare the model again (python manage.py prepare_models) or choose another version."
        )
    if current is not None:
        ModelVersion.objects.filter(pk=current.pk).update(status=ModelVersion.Status.RETIRED)
    target.status = ModelVersion.Status.ACTIVE
    target.activated_at = timezone.now()
    target.save(update_fields=["status", "activated_at"])
    _record(target, action, actor, previous=current, reason=reason)
    _forget_active_on_commit()
    log.info(
        "event=model_%s kind=%s version=%s previous=%s",
        action,
        kind,
        target.key,
        current.key if current else "-",
    )
    return target


def _lock_kind(kind: str) -> None:
    # Row locks on every version of the kind serialise concurrent activations (PostgreSQL);
    # SQLite takes its write lock when the transaction starts (transaction_mode IMMEDIATE).
    list(ModelVersion.objects.select_for_update().filter(kind=kind).values_list("pk", flat=True))


def do_activate_model_version(version: ModelVersion, *, actor: Actor, reason: str = "") -> ModelVersion:
    """Make `version` the active one of its kind; the version active until now is retired.

    Refused (nothing changes) when it is already active or its files are missing.
    """
    with transaction.atomic():
        _lock_kind(version.kind)
        return _swap_active(version.kind, version.pk, ModelEvent.Action.ACTIVATED, actor, reason)


def do_rollback(kind: str, *, actor: Actor, reason: str = "") -> ModelVersion:
    """Re-activate the version that was active just before the current one became active.

    Read from the audit trail, so a second rollback undoes the first (as `kubectl rollout undo`
    does). Refused when the current version has no recorded predecessor.
    """
    with transaction.atomic():
        _lock_kind(kind)
        current = ModelVersion.objects.filter(kind=kind, status=ModelVersion.Status.ACTIVE).first()
        if current is None:
            raise NothingToRollBack(f"No {kind} model is active, so there is nothing to roll back.")
        made_active = (
            ModelEvent.objects.filter(
                version=current,
                action__in=[ModelEvent.Action.ACTIVATED, ModelEvent.Action.ROLLED_BACK],
            )
            .order_by("-id")  # insertion order; clocks may repeat or be frozen in tests
            .first()
        )
        if made_active is None or made_active.previous_id is None:
            raise NothingToRollBack(
                f"{current.key} has no earlier active {kind} model on record to roll back to."
            )
        return _swap_active(kind, made_active.previous_id, ModelEvent.Action.ROLLED_BACK, actor, reason)


def do_retire_model_version(version: ModelVersion, *, actor: Actor, reason: str = "") -> ModelVersion:
    """Set a candidate aside (it stays on record and can still be activated later)."""
    with transaction.atomic():
        _lock_kind(version.kind)
        version = ModelVersion.objects.get(pk=version.pk)
        if version.status == ModelVersion.Status.ACTIVE:
            raise CannotRetireActive(f"{version.key} is the active {version.kind} model; activate another.")
        if version.status == ModelVersion.Status.RETIRED:
            return version
        version.status = ModelVersion.Status.RETIRED
        version.save(update_fields=["status"])
        _record(version, ModelEvent.Action.RETIRED, actor, reason=reason)
    return version

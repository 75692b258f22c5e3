"""Writing the audit log: `record_audit` adds one AuditEvent (core/models.py).

Actors are a user or a text ("cli:root", "system", "beat"), as in the model registry, so a row
still says who acted after the user is deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from core.models import AuditEvent


def actor_fields(actor: Any) -> dict[str, Any]:
    if actor is None:
        return {"actor": "system", "actor_user": None}
    if isinstance(actor, str):
        return {"actor": actor[:200], "actor_user": None}
    return {"actor": f"user:{actor.get_username()}"[:200], "actor_user": actor}


def subject_hash(value: str) -> str:
    """A stable reference to a person (an email address) that does not reveal it: the audit log
    may say that the same person was exported and later erased without keeping who they were."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:16]


def record_audit(
    actor: Any,
    action: str,
    *,
    target_type: str = "",
    target_id: object = "",
    model_version: str = "",
    sources: Iterable[Any] = (),
    **data: Any,
) -> AuditEvent:
    return AuditEvent.objects.create(
        action=action,
        target_type=target_type,
        target_id=str(target_id)[:64],
        model_version=model_version[:200],
        sources=list(sources),
        data=data,
        **actor_fields(actor),
    )

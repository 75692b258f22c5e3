"""Writes to actions, for the admin and the JSON API alike: saving one (validated, its secret
encrypted, the change audited), deleting one, and testing one with sample values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from answers.lookups.models import Action, ActionCall
from answers.lookups.runner import LookupReply, Plan, run_lookup
from core.audit import record_audit
from core.errors import DomainError

EDITABLE = (
    "name",
    "enabled",
    "collection",
    "examples",
    "parameters",
    "kind",
    "url",
    "method",
    "headers",
    "timeout_seconds",
    "reply_template",
    "not_found_template",
    "mcp_transport",
    "mcp_target",
    "mcp_tool",
)


def invalid(exc: ValidationError) -> DomainError:
    if hasattr(exc, "error_dict"):
        parts = [
            f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in exc.message_dict.items()
        ]
    else:
        parts = [str(m) for m in exc.messages]
    return DomainError("invalid_action", "Not valid. " + " ".join(parts), 400)


def do_save_action(
    actor: Any, action: Action, fields: Mapping[str, Any], secret: str | None = None
) -> Action:
    """Apply `fields` (names from EDITABLE) and `secret` (None: keep; "": remove) and save:
    validated first (DomainError "invalid_action" saying what is wrong), version bumped."""
    created = action.pk is None
    for name, value in fields.items():
        if name not in EDITABLE:
            raise DomainError("invalid_action", f"Unknown field: {name}.", 400)
        setattr(action, name, value)
    if secret is not None:
        action.set_secret(secret)
    try:
        action.full_clean()
    except ValidationError as exc:
        raise invalid(exc) from exc
    with transaction.atomic():
        action.save()
        record_audit(
            actor,
            "action.create" if created else "action.change",
            target_type="action",
            target_id=action.pk,
            name=action.name,
            version=action.version,
            fields=sorted(fields),
            secret_changed=secret is not None,
        )
    return action


def do_delete_action(actor: Any, action: Action) -> None:
    with transaction.atomic():
        record_audit(actor, "action.delete", target_type="action", target_id=action.pk, name=action.name)
        action.delete()


def sample_values(action: Action, given: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The values to test with: those given, else each parameter's example; DomainError when
    one is missing or does not match its pattern."""
    values: dict[str, str] = {}
    for parameter in action.parameter_list():
        value = (given or {}).get(parameter.name, parameter.example)
        if not isinstance(value, str) or not parameter.accepts(value):
            raise DomainError(
                "invalid_parameter",
                f"Give a value for {parameter.name} that matches its pattern ({parameter.label}).",
                400,
            )
        values[parameter.name] = value
    return values


def do_test_action(actor: Any, action: Action, given: Mapping[str, Any] | None = None) -> LookupReply:
    """Call the action as the chat would, with sample values; recorded like any call."""
    plan = Plan(action, sample_values(action, given), None, 1.0)
    who = f"admin:{getattr(actor, 'pk', '')}"
    return run_lookup(plan, visitor=who, caller="admin test", actor=actor)


def call_dict(call: ActionCall) -> dict[str, Any]:
    return {
        "id": call.pk,
        "action": call.action_id,
        "action_name": call.action_name,
        "action_version": call.action_version,
        "conversation": call.conversation,
        "ticket": call.ticket,
        "caller": call.caller,
        "parameters": call.parameters,
        "status": call.status,
        "http_status": call.http_status,
        "latency_ms": call.latency_ms,
        "error": call.error,
        "created_at": call.created_at.isoformat(),
    }


def action_dict(action: Action) -> dict[str, Any]:
    """An action as admins may read it: everything but the secret, which is only "set" or not."""
    return {
        "id": action.pk,
        **{name: getattr(action, name) for name in EDITABLE},
        "secret_set": action.has_secret,
        "version": action.version,
        "created_at": action.created_at.isoformat(),
        "updated_at": action.updated_at.isoformat(),
    }

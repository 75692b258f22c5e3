"""Changing the governance settings (core/models.py GovernanceSettings): the legal basis for
training on personal data, redaction, retention periods. Every change is audited with its
before and after values; the legal basis keeps who recorded it and when."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.db import transaction
from django.utils import timezone

from core.audit import record_audit
from core.models import GovernanceSettings

RETENTION_FIELDS = (
    "retention_messages_days",
    "retention_emails_days",
    "retention_embeddings_days",
    "retention_model_logs_days",
)
SWITCHES = ("redact_prompts", "redact_logs", "redact_training")
EDITABLE = ("legal_basis", *SWITCHES, "redact_entities", *RETENTION_FIELDS)
ENTITY = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")  # Presidio's names: EMAIL_ADDRESS, IBAN_CODE...


class GovernanceError(Exception):
    """A refused change, with a stable code; `form` holds the field errors to show."""

    def __init__(self, code: str, message: str, form: GovernanceForm | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.form = code, message, form


class EntityListField(forms.CharField):
    """Entity types, one per line or comma-separated, stored as a list."""

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        names = [name.strip().upper() for name in re.split(r"[\s,]+", text) if name.strip()]
        bad = [name for name in names if not ENTITY.match(name)]
        if bad:
            raise forms.ValidationError(f"Not an entity type: {', '.join(bad)} (e.g. EMAIL_ADDRESS).")
        return list(dict.fromkeys(names))  # order kept, duplicates dropped


def _days(label: str, help_text: str) -> forms.IntegerField:
    """A retention period: at least a day, at most ten years."""
    return forms.IntegerField(min_value=1, max_value=3650, label=label, help_text=help_text)


class GovernanceForm(forms.ModelForm):
    redact_entities = EntityListField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One per line. Empty: the default set (EMAIL_ADDRESS, PHONE_NUMBER, IBAN_CODE, PERSON).",
    )

    retention_messages_days = _days("Chat conversations (days)", "Since the last message.")
    retention_emails_days = _days(
        "Email tickets (days)",
        "Closed tickets, since their last activity: mail, raw mail, attachments, drafts.",
    )
    retention_embeddings_days = _days("Question vectors (days)", "Kept for drift detection.")
    retention_model_logs_days = _days("Model-call logs (days)", "The prompts stored with drafts.")

    class Meta:
        model = GovernanceSettings
        fields = EDITABLE
        widgets = {"legal_basis": forms.Textarea(attrs={"rows": 3})}


def do_update_governance(user, form_data: Any) -> GovernanceSettings:
    """Apply the settings page's form. Raises GovernanceError("invalid_settings") with the bound
    form when a value is refused; writes nothing when nothing changed."""
    with transaction.atomic():
        GovernanceSettings.load()
        current = GovernanceSettings.objects.select_for_update().get(pk=1)
        before = {name: getattr(current, name) for name in EDITABLE}
        form = GovernanceForm(form_data, instance=current)
        if not form.is_valid():  # (validation also copies the values onto `current`)
            raise GovernanceError("invalid_settings", "Some values are not valid.", form)
        changes = {
            name: [before[name], getattr(current, name)]
            for name in EDITABLE
            if getattr(current, name) != before[name]
        }
        if not changes:
            return current
        basis = changes.pop("legal_basis", None)
        update_fields = [*changes, "updated_by", "updated_at"]
        if basis is not None:
            # Who stated the legal basis and when is what an auditor asks first; clearing it turns
            # training on replies with personal data off again (personal_data_training_allowed).
            recorded = bool(current.legal_basis)
            current.legal_basis_recorded_by = user if recorded else None
            current.legal_basis_recorded_at = timezone.now() if recorded else None
            update_fields += ["legal_basis", "legal_basis_recorded_by", "legal_basis_recorded_at"]
        current.updated_by = user
        current.save(update_fields=update_fields)
        if basis is not None:
            action = "legal_basis.recorded" if current.legal_basis else "legal_basis.cleared"
            record_audit(
                user, action, target_type="governance", target_id=current.pk, changes={"legal_basis": basis}
            )
        if changes:
            record_audit(
                user, "settings.changed", target_type="governance", target_id=current.pk, changes=changes
            )
    return current

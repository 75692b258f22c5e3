"""Project-wide tables: API tokens (people and integrations reach the JSON API with them), the
governance settings and the audit events that have no trail of their own."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "prl_"  # noqa: S105 - a public prefix, not a secret


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token acting as its user (and so with the user's roles). Only a hash is stored:
    the token itself is shown once, when it is made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)  # shown in lists to tell tokens apart
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "config_apitoken"  # created by config/migrations (this model lived there)
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user: Any, name: str = "") -> tuple[ApiToken, str]:
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, token_hash=hash_token(raw), prefix=raw[:12])
        return token, raw


class GovernanceSettings(models.Model):
    """The governance settings an admin keeps on the settings page: one row (pk=1), read with
    `GovernanceSettings.load()`.

    Fine-tuning on approved replies that contain personal data stays off until an admin records a
    legal basis here (GDPR art. 6); the retention periods are enforced by scheduled purges.
    """

    legal_basis = models.TextField(
        blank=True,
        help_text="Why training on replies that contain personal data is lawful, e.g. "
        "'legitimate interest, assessment DPIA-2026-04'. Empty: such replies are left out.",
    )
    legal_basis_recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    legal_basis_recorded_at = models.DateTimeField(null=True, blank=True)
    # Where personal data is replaced by placeholders before it goes further.
    redact_prompts = models.BooleanField(default=True, help_text="Before text reaches a model prompt.")
    redact_logs = models.BooleanField(
        default=True, help_text="Before text reaches logs and model-call records."
    )
    redact_training = models.BooleanField(default=True, help_text="Before text reaches training data.")
    redact_entities = models.JSONField(
        default=list,
        blank=True,
        help_text="Entity types to redact (empty: the default set: "
        "EMAIL_ADDRESS, PHONE_NUMBER, IBAN_CODE, PERSON).",
    )
    # Retention per class of data, in days (enforced by the retention purge task).
    retention_messages_days = models.PositiveIntegerField(default=180)  # chat conversations
    retention_emails_days = models.PositiveIntegerField(default=365)  # tickets, mail, drafts
    retention_embeddings_days = models.PositiveIntegerField(default=90)  # question vectors (drift)
    retention_model_logs_days = models.PositiveIntegerField(default=30)  # model-call records
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "config_governancesettings"
        verbose_name = "governance settings"
        verbose_name_plural = "governance settings"

    def __str__(self) -> str:
        return "Governance settings"

    @classmethod
    def load(cls) -> GovernanceSettings:
        # The chat retention period starts as the deployment's CHAT_RETENTION_DAYS (env) so an
        # install that set it keeps its period; from then on the admin's value here rules.
        obj, _ = cls.objects.get_or_create(
            pk=1, defaults={"retention_messages_days": settings.CHAT_RETENTION_DAYS}
        )
        return obj

    @property
    def personal_data_training_allowed(self) -> bool:
        return bool(self.legal_basis.strip())


class AuditEvent(models.Model):
    """One accountable act that has no record of its own elsewhere (settings changed, a person's
    data exported or erased, a fine-tune run, a model promoted from the console...). Tickets,
    content items and the model registry keep their own trails (TicketEvent, StateChange,
    ModelEvent); the audit log reads all of them together. Rows are only ever added, and hold no
    personal data: an erasure records a hash of the address, not the address."""

    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=200)  # "user:alice", "cli:root", "system": survives deletion
    action = models.CharField(max_length=64, db_index=True)  # "person.erased", "settings.changed", ...
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    model_version = models.CharField(max_length=200, blank=True)
    sources = models.JSONField(default=list, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "config_auditevent"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"

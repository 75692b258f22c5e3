from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every layer may use: roles, transitions, the audit record, redaction, API auth and
    DomainError. Imports no other project package."""

    name = "core"
    verbose_name = "Parley core"

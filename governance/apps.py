from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """The audit log, retention, export and erasure by person, governance settings: the top of
    the product, which may read every app."""

    name = "governance"
    verbose_name = "Governance"

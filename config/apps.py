from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """Wiring only: the project-wide `serve` command. Its migrations are the history of the
    models that now live in core/ (core/migrations/0001 takes them over without touching the
    tables)."""

    name = "config"
    verbose_name = "Parley"

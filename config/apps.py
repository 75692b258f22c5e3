from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """Holds the project-wide management commands (`serve`)."""

    name = "config"
    verbose_name = "Parley"

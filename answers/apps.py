from django.apps import AppConfig


class AnswersConfig(AppConfig):
    """The one grounded-answer path (retrieve, screen, redact, fit, generate, guard, restore,
    record, fall back) and the curated answers it gives instead of a generated one. Imports only
    retrieval/, inference/ and core/."""

    name = "answers"
    verbose_name = "Parley answers"

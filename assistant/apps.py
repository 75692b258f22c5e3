from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant"

    def ready(self) -> None:
        # Their receivers observe stored answers, feedback and handoffs, and queue each answered
        # question for drift sampling, in every process (web, worker, commands). Imported here,
        # not at the top: they use the models, which cannot be imported before the registry is ready.
        from assistant.insights import metrics  # noqa: F401

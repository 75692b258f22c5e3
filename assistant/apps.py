from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant"

    def ready(self) -> None:
        # Their receivers observe stored answers, feedback and handoffs, and queue each answered
        # question for drift sampling, in every process (web, worker, commands).
        from assistant.insights import metrics  # noqa: F401

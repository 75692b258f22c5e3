"""When the model fails the visitor: a fixed reply and a person, never a hang.

`watched` wraps a generation's delta iterator so that a model giving no token for
CHAT_MODEL_STALL_SECONDS (the first included: a queue that never admits the request looks the
same to the visitor), or still going CHAT_ANSWER_TIMEOUT_SECONDS after it started, raises an
InferenceError like any other model failure; `stream_answer` (assistant/chat/actions.py) then sends
`fallback_text` and hands the conversation to a person.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from inference.base import Generation, InferenceError, ModelBusy, ModelUnavailable

# In the site's language, like the canned answers (assistant/chat/replies.py).
FALLBACK = {
    "en": "Sorry, I can't answer that right now. I've passed your question to a member of our team, "
    "who will reply here.",
    "de": "Entschuldigung, ich kann das gerade nicht beantworten. Ich habe Ihre Frage an unser Team "
    "weitergegeben; jemand antwortet Ihnen hier.",
    "fr": "Désolé, je ne peux pas répondre pour le moment. J'ai transmis votre question à notre équipe, "
    "quelqu'un vous répondra ici.",
}


class ModelStalled(InferenceError):
    code = "model_stalled"
    message = "The model stopped producing text."


class AnswerTimedOut(InferenceError):
    code = "answer_timeout"
    message = "The answer took too long."


def fallback_text(conversation) -> str:
    language = conversation.site.language if conversation.site and conversation.site.language else "en"
    return FALLBACK.get(language, FALLBACK["en"])


def finish_reason(error: InferenceError) -> str:
    """Why the answer was replaced, in Message.finish_reason's 16 characters."""
    if isinstance(error, ModelStalled):
        return "stalled"
    if isinstance(error, AnswerTimedOut):
        return "timeout"
    if isinstance(error, ModelBusy):
        return "busy"
    return "error"


async def watched(deltas: AsyncIterator[str], *, stall: float, timeout: float) -> AsyncIterator[str]:
    """`deltas`, raising ModelStalled when the next one takes longer than `stall` seconds and
    AnswerTimedOut when they are still coming `timeout` seconds from now. Closing this closes
    `deltas` (which frees the model)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            remaining = deadline - loop.time()
            limit = min(stall, remaining)
            try:
                async with asyncio.timeout(max(limit, 0.0)):
                    delta = await anext(deltas)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                # The timeout cancelled the model's pending step; the finally closes it for good.
                if limit < stall:
                    raise AnswerTimedOut() from exc
                raise ModelStalled() from exc
            yield delta
    finally:
        await deltas.aclose()


class UnavailableGenerator:
    """Stands in for a text generator that could not be built (its files missing, out of
    memory): every stream fails at once with ModelUnavailable, so the visitor gets the same
    fallback and person as for any other model failure."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @staticmethod
    def count_tokens(text: str) -> int:
        return len(text) // 4 + 1  # only trims the prompt that is never sent

    def stream(self, messages, params) -> Generation:
        async def fail() -> AsyncIterator[str]:
            raise ModelUnavailable(f"The model could not be loaded ({self.error.__class__.__name__}).")
            yield ""  # pragma: no cover - makes this an async generator

        generation = Generation()
        generation.deltas = fail()
        return generation

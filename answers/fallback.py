"""When the model fails: a fixed reply and a person, never a hang.

`watched` wraps a generation's delta iterator so that a model giving no token for `stall`
seconds (the first included: a queue that never admits the request looks the same to the
reader), or still going `timeout` seconds after it started, raises an InferenceError like any
other model failure; the answer path (answers/generate.py) then ends the answer with `failure`
set, and its caller falls back: the chat sends `fallback_text` and hands the conversation to a
person, the desk files a flagged empty draft, the studio marks the step failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from inference.base import (
    ChatMessage,
    Generation,
    GenerationParams,
    InferenceError,
    ModelBusy,
    ModelUnavailable,
    TextGenerator,
)
from inference.services import get_text_generator

log = logging.getLogger(__name__)

# In the site's language, like the canned answers (assistant/chat/replies.py).
FALLBACK = {
    "en": "Sorry, I can't answer that right now. I've passed your question to a member of our team, "
    "who will reply here.",
    "de": "Entschuldigung, ich kann das gerade nicht beantworten. Ich habe Ihre Frage an unser Team "
    "weitergegeben; jemand antwortet Ihnen hier.",
    "fr": "Désolé, je ne peux pas répondre pour le moment. J'ai transmis votre question à notre équipe, "
    "quelqu'un vous répondra ici.",
}

# Why the watch cut a generation off: (InferenceError code, message), by finish reason.
_CUT_OFF = {
    "stalled": ("model_stalled", "The model stopped producing text."),
    "timeout": ("answer_timeout", "The answer took too long."),
}


class CutOff(InferenceError):
    """The watch stopped the model: `reason` is "stalled" (no token for the stall limit) or
    "timeout" (still going at the answer limit)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        code, message = _CUT_OFF[reason]
        super().__init__(message, code=code)


def fallback_text(language: str | None) -> str:
    """The fixed reply in `language` (a site's), English where there is none for it."""
    return FALLBACK.get(language or "en", FALLBACK["en"])


def finish_reason(error: InferenceError) -> str:
    """Why the answer was replaced, in the 16 characters of a stored finish_reason."""
    if isinstance(error, CutOff):
        return error.reason
    if isinstance(error, ModelBusy):
        return "busy"
    return "error"


async def watched(deltas: AsyncIterator[str], *, stall: float, timeout: float) -> AsyncIterator[str]:
    """`deltas`, raising CutOff("stalled") when the next one takes longer than `stall` seconds
    and CutOff("timeout") when they are still coming `timeout` seconds from now. Closing this
    closes `deltas` (which frees the model)."""
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
                raise CutOff("timeout" if limit < stall else "stalled") from exc
            yield delta
    finally:
        aclose = getattr(deltas, "aclose", None)  # an async generator's, or a backend's own
        if aclose is not None:
            await aclose()


class UnavailableGenerator(TextGenerator):
    """Stands in for a text generator that could not be built (its files missing, out of
    memory): every generation fails at once with ModelUnavailable, so the reader gets the same
    fallback as for any other model failure."""

    model_version = "unavailable"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1  # only trims the prompt that is never sent

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        async def fail() -> AsyncIterator[str]:
            raise ModelUnavailable(f"The model could not be loaded ({self.error.__class__.__name__}).")
            yield ""  # pragma: no cover - makes this an async generator

        generation = Generation()
        generation.deltas = fail()
        return generation


def load_generator() -> TextGenerator:
    """The text generator (built once per process), or a stand-in whose every generation fails:
    a model that cannot be loaded ends in the caller's fallback, not a crash. Blocking the
    first time (seconds): from an event loop, call it through sync_to_async."""
    try:
        return get_text_generator()
    except Exception as exc:  # noqa: BLE001 - any load failure is the fallback's, and logged
        log.exception("event=text_generator_unavailable")
        return UnavailableGenerator(exc)

"""What both websockets (the visitors' `/ws/chat/` and the agents' `/ws/console/`) share about
frames: reading a client's frame and its message text, and answering with JSON frames. A
DomainError becomes its `{"type": "error", "code", "message"}` frame (with `retry_after` and
any other extra) here and nowhere else; anything else is logged with its traceback and answered
with `internal_error`. Either way the socket stays open."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from django.conf import settings

from assistant.chat.actions import storable
from assistant.chat.errors import ChatError
from core.errors import DomainError

log = logging.getLogger(__name__)

INTERNAL_ERROR = ChatError("internal_error", "Something went wrong; please try again.")


def parse_frame(text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
    """A client frame as a dict, or the ChatError that says what is wrong with it."""
    if text_data is None:
        raise ChatError("bad_frame", "Send JSON text frames, not binary.")
    if len(text_data.encode("utf-8", "surrogatepass")) > settings.CHAT_MAX_FRAME_BYTES:
        raise ChatError("frame_too_large", f"Frames are limited to {settings.CHAT_MAX_FRAME_BYTES} bytes.")
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the parser
        raise ChatError("bad_json", "The frame is not valid JSON.") from exc
    if not isinstance(frame, dict):
        raise ChatError("bad_frame", 'A frame must be a JSON object with a "type".')
    return frame


def message_text(value: Any) -> str:
    """A visitor's or an agent's message text, stripped, or the ChatError that says why not."""
    if not isinstance(value, str) or not value.strip():
        raise ChatError("empty_message", "The message is empty.")
    text = value.strip()
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError(
            "message_too_long", f"Messages are limited to {settings.CHAT_MAX_MESSAGE_CHARS} characters."
        )
    if not storable(text):
        raise ChatError(
            "bad_text", "The message contains characters that are not text (NUL or a broken character)."
        )
    return text


class FrameSocket:
    """Mixed into both consumers (before AsyncWebsocketConsumer): JSON frames out, and errors as
    error frames."""

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(payload))  # type: ignore[attr-defined]

    async def send_error(self, error: DomainError) -> None:
        await self.send_json(error.frame())

    @asynccontextmanager
    async def errors_as_frames(self, event: str) -> AsyncIterator[None]:
        """Run the block; a DomainError it raises is sent as its error frame, any other error
        (a bug) is logged as `event` and sent as internal_error: a bug must not cost the client
        its socket. Cancellation passes through."""
        try:
            yield
        except DomainError as exc:
            await self.send_error(exc)
        except Exception:
            log.exception("event=%s", event)
            await self.send_error(INTERNAL_ERROR)

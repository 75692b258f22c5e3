"""The website chat websocket, `/ws/chat/` (protocol in ARCHITECTURE.md).

The consumer only parses and validates frames and maps them to actions; every bad frame gets an
`error` frame and the connection stays open. Answers stream in a task of their own so the socket
keeps reading (and can be closed) while tokens flow.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from assistant.actions import do_record_feedback, stream_answer
from assistant.errors import ChatError
from retrieval.models import COLLECTION_NAME

log = logging.getLogger(__name__)


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.conversation_id: str | None = None
        self.answer_task: asyncio.Task | None = None
        # The widget's data-collection arrives as ?collection=...; it picks the knowledge base
        # for new conversations (a resumed one keeps its own).
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.collection = (query.get("collection") or ["default"])[0]
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.answer_task and not self.answer_task.done():
            self.answer_task.cancel()  # frees the model at the next token; the partial is kept

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(payload))

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = self._parse(text_data, bytes_data)
            kind = frame.get("type")
            if kind == "message":
                await self._on_message(frame)
            elif kind == "feedback":
                await self._on_feedback(frame)
            elif kind == "handoff":
                raise ChatError(
                    "handoff_unavailable", "Talking to a person is not available on this site yet."
                )
            else:
                raise ChatError("unknown_type", "Unknown frame type; expected message, feedback or handoff.")
        except ChatError as exc:
            await self.send_error(exc.code, exc.message)

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if text_data is None:
            raise ChatError("bad_frame", "Send JSON text frames, not binary.")
        if len(text_data.encode("utf-8", "surrogatepass")) > settings.CHAT_MAX_FRAME_BYTES:
            raise ChatError(
                "frame_too_large", f"Frames are limited to {settings.CHAT_MAX_FRAME_BYTES} bytes."
            )
        try:
            frame = json.loads(text_data)
        except ValueError as exc:
            raise ChatError("bad_json", "The frame is not valid JSON.") from exc
        if not isinstance(frame, dict):
            raise ChatError("bad_frame", 'A frame must be a JSON object with a "type".')
        return frame

    async def _on_message(self, frame: dict[str, Any]) -> None:
        text = frame.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ChatError("empty_message", "The message is empty.")
        text = text.strip()
        if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise ChatError(
                "message_too_long", f"Messages are limited to {settings.CHAT_MAX_MESSAGE_CHARS} characters."
            )
        conversation = frame.get("conversation", self.conversation_id)
        if conversation is not None and not isinstance(conversation, str):
            raise ChatError("unknown_conversation", "That conversation does not exist.")
        if not COLLECTION_NAME.fullmatch(self.collection):
            raise ChatError("unknown_collection", "That knowledge base does not exist.")
        if self.answer_task and not self.answer_task.done():
            raise ChatError("answer_in_progress", "Please wait until the current answer is finished.")
        self.answer_task = asyncio.create_task(self._answer(text, conversation, self.collection))

    async def _answer(self, text: str, conversation: str | None, collection: str) -> None:
        try:
            async for event in stream_answer(text, conversation_id=conversation, collection=collection):
                if event.kind == "conversation":
                    self.conversation_id = event.data["id"]
                await self.send_json({"type": event.kind, **event.data})
        except ChatError as exc:
            await self.send_error(exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=answer_failed")
            await self.send_error("internal_error", "Something went wrong; please try again.")

    async def _on_feedback(self, frame: dict[str, Any]) -> None:
        if self.conversation_id is None:
            raise ChatError("unknown_message", "That message does not exist.")
        await do_record_feedback(
            self.conversation_id, frame.get("message"), frame.get("value"), frame.get("comment")
        )
        await self.send_json({"type": "feedback_saved", "message": str(frame.get("message"))})

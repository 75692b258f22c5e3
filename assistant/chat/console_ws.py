"""The agents' console websocket, `/ws/console/`: the live queue and the conversations an agent
has open. Staff with the agent role only (session login; the ASGI stack checks the Origin is the
Parley host itself).

Client → server: {"type": "open", "conversation": id} (history, then its live frames),
{"type": "claim" | "hand_back" | "close", "conversation": id},
{"type": "reply", "conversation": id, "text": "...", "suggestion": id?} (`suggestion`: the id of the
suggestion the agent inserted, so the reply is counted as sent unedited or edited),
{"type": "typing", "conversation": id} (the visitor sees the agent's name typing; only for the
agent holding it). The copilot (assistant/chat/copilot.py): {"type": "suggest", "conversation": id}
(a suggested reply to the visitor's latest question, for this agent only), {"type": "macros"}
(the canned replies this agent may insert), {"type": "macro", "conversation": id, "macro": id}
(one filled in for the conversation).
Server → client: {"type": "queue", "conversations": [...]} on connect, {"type": "changed",
"conversation": {...}} whenever one enters, leaves or changes state, {"type": "history", ...},
the conversation frames the visitor also gets (handoff, agent_message) plus `visitor_message`
and the bot's stored answers, {"type": "suggestion", ...}, {"type": "macros", "items"},
{"type": "macro", "text", "missing", "warning"} to the agent who asked, and
{"type": "error", "code", "message"}. The history frame carries `summary`: what the visitor asked
the assistant before the handover (copilot.handover_summary; null when never handed over).

Every frame counts against the agent's CHAT_CONSOLE_FRAMES_PER_MINUTE; bad ones get an `error`
frame and the socket stays open, as on the visitors' socket.

While the socket is open the agent counts as online (assistant/chat/presence.py): visitors who
ask for a person are queued for them; with no console open anywhere, visitors are offered email.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from assistant.chat import copilot, handoff, presence, present
from assistant.chat.access import get_visitor_conversation
from assistant.chat.errors import ChatError
from assistant.chat.frames import FrameSocket, message_text, parse_frame
from assistant.chat.limits import check_rate
from assistant.copilot import check_suggestion_id
from assistant.models import Conversation
from core.roles import AGENT, has_role

log = logging.getLogger(__name__)


@sync_to_async
def _queue() -> list[dict[str, Any]]:
    live = Conversation.objects.filter(
        status__in=[Conversation.Status.QUEUED, Conversation.Status.AGENT]
    ).select_related("agent", "site", "ticket")
    return [present.summary(c) for c in live.order_by("handoff_at")]


@sync_to_async
def _open(conversation_id: Any) -> dict[str, Any]:
    conversation = get_visitor_conversation(conversation_id, None)  # staff: any visitor's
    state = present.state_frame(conversation)
    return {
        "type": "history",
        "conversation": present.summary(conversation),
        "state": state["state"],
        "messages": present.history(conversation),
        "summary": copilot.handover_summary(conversation),
    }


class ConsoleConsumer(FrameSocket, AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.groups_joined: set[str] = set()
        self.admitted = False
        self.heartbeat: asyncio.Task | None = None
        if not await sync_to_async(has_role)(self.user, AGENT):
            await self.close(code=4001)  # not logged in as an agent: refused before accept
            return
        await self.accept()
        self.admitted = True
        await sync_to_async(presence.arrive)(self.user, self.channel_name)
        self.heartbeat = asyncio.create_task(self._stay_online())
        await self.channel_layer.group_add(handoff.CONSOLE_GROUP, self.channel_name)
        self.groups_joined.add(handoff.CONSOLE_GROUP)
        await self.send_json({"type": "queue", "conversations": await _queue(), "me": self.user.pk})

    async def disconnect(self, code: int) -> None:
        if self.heartbeat:
            self.heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat
        if self.admitted:
            await sync_to_async(presence.leave)(self.channel_name)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _stay_online(self) -> None:
        """Refresh this socket's presence while it is open; if the process dies, it expires."""
        while True:
            await asyncio.sleep(presence.refresh_seconds())
            try:
                await sync_to_async(presence.arrive)(self.user, self.channel_name)
            except Exception:  # a database hiccup: try again next time rather than stop for good
                log.exception("event=presence_refresh_failed")

    async def console_changed(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "changed", "conversation": event["conversation"]})

    async def chat_frame(self, event: dict[str, Any]) -> None:
        await self.send_json(event["frame"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.admitted:
            return
        async with self.errors_as_frames("console_frame_failed"):
            await sync_to_async(check_rate, thread_sensitive=False)("console", agent=str(self.user.pk))
            await self._dispatch(parse_frame(text_data, bytes_data))

    async def _follow(self, conversation: str) -> None:
        group = handoff.conversation_group(conversation)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        kind, conversation = frame.get("type"), frame.get("conversation")
        if kind == "macros":  # about the agent, not a conversation
            await self.send_json(await copilot.macros_frame(self.user))
            return
        if not isinstance(conversation, str):
            raise ChatError("unknown_conversation", "That conversation does not exist.")
        if kind == "open":
            opened = await _open(conversation)
            await self._follow(conversation)
            await self.send_json(opened)
        elif kind == "claim":
            await handoff.claim(conversation, self.user)
        elif kind == "hand_back":
            await handoff.hand_back(conversation, self.user)
        elif kind == "close":
            await handoff.close(conversation, self.user)
        elif kind == "typing":
            frame = await handoff.agent_typing(conversation, self.user)
            if handoff.conversation_group(conversation) not in self.groups_joined:
                await self.send_json(frame)  # as for a reply: every frame has an answer
        elif kind == "suggest":  # to this agent alone; the visitor is sent nothing
            await self.send_json(await copilot.chat_suggestion(conversation, self.user))
        elif kind == "macro":
            await self.send_json(await copilot.macro_frame(conversation, frame.get("macro"), self.user))
        elif kind == "reply":
            text = message_text(frame.get("text"))
            suggestion = check_suggestion_id(frame.get("suggestion"))
            message = await handoff.agent_reply(conversation, self.user, text)
            await copilot.record_reply(message, suggestion, self.user)
            if handoff.conversation_group(conversation) not in self.groups_joined:
                # Replied without opening it (a script, a stale tab): the agent still gets their
                # message back as the conversation's followers do, so every frame has an answer.
                await self.send_json(present.agent_message_frame(message, self.user))
        else:
            raise ChatError(
                "unknown_type",
                "Unknown frame type; expected open, claim, reply, typing, suggest, macros, macro, "
                "hand_back or close.",
            )

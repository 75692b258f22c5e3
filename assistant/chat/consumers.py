"""The website chat websocket, `/ws/chat/` (protocol in ARCHITECTURE.md and README.md, "Chat
websocket").

The consumer only parses and validates frames and maps them to actions; every bad frame gets an
`error` frame and the connection stays open. Answers stream in a task of their own so the socket
keeps reading (and can be closed) while tokens flow.

Connecting: `?site=KEY` picks the company site (its origins, knowledge base and look), `?visitor=`
carries the visitor's signed token (assistant/chat/visitors.py; a missing or bad one gets a new one).
`?collection=` (the widget's data-collection) may only name a public knowledge base: with a site,
the site's own one is used; without, one of WIDGET_PUBLIC_COLLECTIONS; anything else is refused
with `unknown_collection` when the visitor first asks.
The Origin header must be the Parley host itself, one of WIDGET_ALLOWED_ORIGINS, or one of the
site's origins; anything else, a missing Origin included, gets an `origin_not_allowed` error and
the socket is closed (code 4003), so the widget can say why instead of retrying forever.

Limits (assistant/chat/limits.py): every frame counts against the visitor's and the address's
allowance; handoffs are capped per visitor and per address; answers beyond the address's share
wait in line, told their place with `{"type": "queued", "position": n, "wait_seconds": s}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import validate_host

from assistant.chat import availability, handoff, offline, presence, present
from assistant.chat.access import get_visitor_conversation
from assistant.chat.actions import do_record_feedback, get_or_start_conversation, stream_answer
from assistant.chat.errors import ChatError
from assistant.chat.frames import FrameSocket, message_text, parse_frame
from assistant.chat.limits import GenerationSlot, check_handoff, check_rate, record_handoff
from assistant.chat.privacy import erase_visitor, export_visitor
from assistant.chat.visitors import issue_token, read_token
from assistant.models import Conversation, Site
from retrieval.models import COLLECTION_NAME

log = logging.getLogger(__name__)

CLOSE_ORIGIN = 4003
CLOSE_IDLE = 4008


def parley_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def origin_allowed(origin: str, site: Site | None) -> bool:
    if not origin:
        return False
    origin = origin.rstrip("/").lower()
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if validate_host(parts.netloc, parley_hosts()) or validate_host(parts.hostname, parley_hosts()):
        return True
    allowed = {o.rstrip("/").lower() for o in settings.WIDGET_ALLOWED_ORIGINS}
    if site is not None:
        allowed |= site.origins()
    return origin in allowed


def widget_collection(site: Site | None, requested: str) -> str | None:
    """The knowledge base a visitor's socket may use, or None when `requested` (the widget's
    ?collection=) names one it may not: private collections are for staff, never for the widget."""
    public = settings.WIDGET_PUBLIC_COLLECTIONS
    if site is not None:
        # The widget always sends its data-collection (default "default"): that, the site's own
        # name or nothing all mean the site's collection.
        return (
            site.collection if not requested or requested == site.collection or requested in public else None
        )
    requested = requested or "default"
    return requested if requested in public else None


@sync_to_async
def _site(key: str) -> Site | None:
    return Site.objects.filter(key=key).first() if key else None


class ChatConsumer(FrameSocket, AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.conversation_id: str | None = None
        self.visitor: str | None = None  # set once the socket is admitted; frames before are ignored
        self.group: str | None = None
        self.answer_task: asyncio.Task | None = None
        self.idle_task: asyncio.Task | None = None
        self.last_seen = time.monotonic()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        headers = dict(self.scope.get("headers", []))
        self.site = await _site((query.get("site") or [""])[0][:64])
        # The widget's data-collection arrives as ?collection=...; it picks the knowledge base
        # for new conversations (a resumed one keeps its own). None: not one a visitor may use.
        self.collection = widget_collection(self.site, (query.get("collection") or [""])[0])
        self.ip = (self.scope.get("client") or ["unknown"])[0]
        await self.accept()
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin_allowed(origin, self.site):
            log.info("event=chat_origin_refused origin=%r site=%s", origin[:100], self.site and self.site.key)
            await self.send_error(ChatError("origin_not_allowed", "This website may not use this chat."))
            await self.close(code=CLOSE_ORIGIN)
            return
        token = (query.get("visitor") or [""])[0]
        visitor = read_token(token)
        if visitor is None:
            visitor, token = issue_token()
        self.visitor = visitor
        await self.send_json({"type": "visitor", "token": token})
        if self.site:
            await self.send_json({"type": "config", **self.site.widget_config()})
        self.idle_task = asyncio.create_task(self._close_when_idle())

    async def disconnect(self, code: int) -> None:
        if self.answer_task and not self.answer_task.done():
            self.answer_task.cancel()  # frees the model at the next token; the partial is kept
        if self.idle_task:
            self.idle_task.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _close_when_idle(self) -> None:
        while True:
            remaining = self.last_seen + settings.CHAT_IDLE_TIMEOUT - time.monotonic()
            if remaining <= 0 and not (self.answer_task and not self.answer_task.done()):
                await self.close(code=CLOSE_IDLE)
                return
            await asyncio.sleep(max(remaining, 1.0))

    async def chat_frame(self, event: dict[str, Any]) -> None:
        """A frame for everyone following this conversation (handoff state, agent messages)."""
        frame = event["frame"]
        if frame["type"] == "visitor_message":
            return  # for the agents' consoles; the visitor's own tab already shows it
        await self.send_json(frame)

    async def _follow(self, conversation_id: str) -> None:
        """Receive the conversation's group frames (agent messages, handoff state)."""
        group = handoff.conversation_group(conversation_id)
        if group != self.group:
            if self.group:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_add(group, self.channel_name)
            self.group = group
        self.conversation_id = conversation_id

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.visitor is None:
            return  # refused at connect (bad origin) and being closed: nothing more to say
        self.last_seen = time.monotonic()
        async with self.errors_as_frames("chat_frame_failed"):
            # Every frame counts, before it is even parsed: garbage is not a free way to load us.
            await sync_to_async(check_rate, thread_sensitive=False)("frame", visitor=self.visitor, ip=self.ip)
            frame = parse_frame(text_data, bytes_data)
            kind = frame.get("type")
            if kind == "message":
                await self._on_message(frame)
            elif kind == "feedback":
                await self._on_feedback(frame)
            elif kind == "handoff":
                await self._on_handoff(frame)
            elif kind == "resume":
                await self._on_resume(frame)
            elif kind == "export":
                data = await sync_to_async(export_visitor)(self.visitor)
                await self.send_json({"type": "export", "data": data})
            elif kind == "erase":
                await self._on_erase()
            elif kind == "email":
                await self._on_email(frame)
            else:
                raise ChatError(
                    "unknown_type",
                    "Unknown frame type; expected message, feedback, handoff, email, resume, export "
                    "or erase.",
                )

    def _conversation_id(self, frame: dict[str, Any]) -> str | None:
        conversation = frame.get("conversation", self.conversation_id)
        if conversation is not None and not isinstance(conversation, str):
            raise ChatError("unknown_conversation", "That conversation does not exist.")
        return conversation

    def _collection(self) -> str:
        if self.collection is None or not COLLECTION_NAME.fullmatch(self.collection):
            raise ChatError("unknown_collection", "That knowledge base does not exist.")
        return self.collection

    async def _start_conversation(self) -> Conversation:
        """A new conversation of this visitor, on this socket's site and knowledge base."""
        self._collection()
        return await sync_to_async(get_or_start_conversation)(None, self.collection, self.visitor, self.site)

    async def _conversation(self, conversation_id: str | None) -> Conversation | None:
        if conversation_id is None:
            return None
        return await sync_to_async(get_visitor_conversation)(conversation_id, self.visitor)

    async def _on_message(self, frame: dict[str, Any]) -> None:
        text = message_text(frame.get("text"))
        conversation_id = self._conversation_id(frame)
        self._collection()
        if self.answer_task and not self.answer_task.done():
            raise ChatError("answer_in_progress", "Please wait until the current answer is finished.")
        await sync_to_async(check_rate, thread_sensitive=False)("message", visitor=self.visitor, ip=self.ip)
        conversation = await self._conversation(conversation_id)
        if conversation is not None and conversation.status == Conversation.Status.CLOSED:
            raise ChatError("conversation_closed", "This conversation is closed; start a new one.")
        if conversation is not None and conversation.status in (
            Conversation.Status.QUEUED,
            Conversation.Status.AGENT,
        ):
            await self._relay(conversation, text)
            if conversation.status == Conversation.Status.QUEUED and not await self._agents_online():
                # Kept for when someone is back, but never silently: the visitor is told and
                # may leave their address instead.
                await self.send_json(await sync_to_async(availability.offer)(conversation))
        elif handoff.asks_for_person(text):
            online = await self._agents_online()
            if online:
                await self._check_handoff()
            if conversation is None:
                conversation = await self._start_conversation()
            await self._follow(str(conversation.id))
            await self.send_json({"type": "conversation", "id": str(conversation.id)})
            message = await handoff.visitor_message_to_agent(conversation, text)
            offer = await self._request_person(conversation) if online else None
            await self._relayed(message)
            if not online:
                await self.send_json(await sync_to_async(availability.offer)(conversation))
            elif offer is not None:  # the last agent left in between
                await self.send_json(offer)
        else:
            # Cache counters are sub-millisecond calls: made inline, so the slot is free again
            # the moment the answer's last frame is sent (a thread hop would leave a window).
            # The visitor's own share is a real limit (their answer in another tab): refused now.
            # The address's share is waited for in line, inside the task, so the socket reads on.
            slot = GenerationSlot(self.visitor, self.ip).take_visitor()
            self.answer_task = asyncio.create_task(self._answer(text, conversation_id, slot))

    async def _relay(self, conversation: Conversation, text: str) -> None:
        await self._follow(str(conversation.id))
        message = await handoff.visitor_message_to_agent(conversation, text)
        await self.send_json({"type": "conversation", "id": str(conversation.id)})
        await self._relayed(message)

    async def _relayed(self, message) -> None:
        """The visitor's message went to a person: no answer from the model follows."""
        await self.send_json({"type": "done", "message": str(message.pk), "handoff": False, "relayed": True})

    async def _queued(self, position: int, wait_seconds: int) -> None:
        await self.send_json({"type": "queued", "position": position, "wait_seconds": wait_seconds})

    async def _answer(self, text: str, conversation: str | None, slot: GenerationSlot) -> None:
        try:
            async with self.errors_as_frames("answer_failed"):  # cancellation passes through
                await slot.wait_for_ip(self._queued)
                async for event in stream_answer(
                    text,
                    conversation_id=conversation,
                    collection=self.collection,
                    visitor=self.visitor,
                    site=self.site,
                ):
                    if event.kind == "conversation":
                        await self._follow(event.data["id"])
                    if event.kind == "done":
                        slot.__exit__(None, None, None)  # before the client can send its next message
                    await self.send_json({"type": event.kind, **event.data})
        finally:
            slot.__exit__(None, None, None)

    async def _on_handoff(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(self._conversation_id(frame))
        if conversation is not None and conversation.status == Conversation.Status.CLOSED:
            raise ChatError("conversation_closed", "This conversation is closed; start a new one.")
        online = await self._agents_online()
        if online and (conversation is None or conversation.status == Conversation.Status.BOT):
            await self._check_handoff()  # before a conversation is made for it
        if conversation is None:
            conversation = await self._start_conversation()
            await self.send_json({"type": "conversation", "id": str(conversation.id)})
        await self._follow(str(conversation.id))
        if conversation.status == Conversation.Status.AGENT:
            # Already with a person: nothing changes, so no group frame comes; say so directly.
            await self.send_json(present.state_frame(conversation))
            return
        if not online:  # nothing is queued: the visitor is told and offered email instead
            await self.send_json(await sync_to_async(availability.offer)(conversation))
            return
        offer = await self._request_person(conversation)  # the state frame comes through the group
        if offer is not None:
            await self.send_json(offer)

    async def _agents_online(self) -> bool:
        return await sync_to_async(presence.agents_online)()

    async def _check_handoff(self) -> None:
        await sync_to_async(check_handoff)(self.visitor, self.ip)

    async def _request_person(self, conversation: Conversation) -> dict[str, Any] | None:
        offer = await handoff.ask_for_person(conversation)
        if offer is None:
            await sync_to_async(record_handoff)(self.ip, conversation.id)
        return offer

    async def _on_email(self, frame: dict[str, Any]) -> None:
        """The visitor's address, to be answered by email: their conversation becomes a desk
        ticket (assistant/chat/offline.py). Its errors say they are about the email form."""
        try:
            await sync_to_async(check_rate, thread_sensitive=False)("email", visitor=self.visitor, ip=self.ip)
            conversation_id = self._conversation_id(frame)
            if conversation_id is None:
                raise ChatError("unknown_conversation", "That conversation does not exist.")
            left = await sync_to_async(offline.leave_email)(
                conversation_id, self.visitor, frame.get("email"), frame.get("name"), frame.get("text")
            )
        except ChatError as exc:
            exc.extra["for"] = "email"
            raise
        await self._follow(str(left.conversation.id))
        ticket = availability.ticket_frame(left.conversation, left.ticket)
        if left.created:  # every tab of the visitor (this one too) and the consoles hear it
            await handoff.announce_ticket(left.conversation, ticket, left.was_queued)
        else:
            await self.send_json(ticket)

    async def _on_resume(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(self._conversation_id(frame))
        if conversation is None:
            raise ChatError("unknown_conversation", "That conversation does not exist.")
        await self._follow(str(conversation.id))
        messages = await sync_to_async(present.history)(conversation)
        state = present.state_frame(conversation)
        await self.send_json({"type": "conversation", "id": str(conversation.id)})
        await self.send_json(
            {
                "type": "history",
                "conversation": str(conversation.id),
                "state": state["state"],
                "agent": state["agent"],
                "initials": state.get("initials"),
                "ticket": availability.ticket_fields(conversation.ticket) if conversation.ticket_id else None,
                "messages": messages,
            }
        )
        if conversation.status == Conversation.Status.QUEUED and not await self._agents_online():
            await self.send_json(await sync_to_async(availability.offer)(conversation))

    async def _on_erase(self) -> None:
        """The visitor's right to erasure: every conversation under their token, now."""
        if self.answer_task and not self.answer_task.done():
            self.answer_task.cancel()
            await asyncio.gather(self.answer_task, return_exceptions=True)
        count = await sync_to_async(erase_visitor)(self.visitor)
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.group = self.conversation_id = None
        await self.send_json({"type": "erased", "conversations": count})

    async def _on_feedback(self, frame: dict[str, Any]) -> None:
        message = frame.get("message")
        await do_record_feedback(self.conversation_id, message, frame.get("value"), frame.get("comment"))
        await self.send_json({"type": "feedback_saved", "message": str(frame.get("message"))})

"""Handoff to a person: the queue, claims, agent replies, and what each side is told.

Every function here is one transaction and returns what happened; it then tells the live
parties through the channel layer: the conversation's group (the visitor's tabs and any agent
console that has it open) and the consoles' group (the queue changed). Claims are settled by the
conversation's state machine (assistant/models.py): of two agents claiming at once, the second
save finds the status changed and fails with `already_claimed`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django_fsm import ConcurrentTransition, TransitionNotAllowed

from assistant.chat import availability, presence
from assistant.chat.access import get_visitor_conversation
from assistant.chat.errors import ChatError
from assistant.chat.present import agent_message_frame, agent_typing_frame, state_frame, summary
from assistant.models import Conversation, Message

CONSOLE_GROUP = "console"

# A visitor asking for a person in words, in the widget's languages.
_ASKS_FOR_PERSON = re.compile(
    r"\b(talk|speak|chat|connect me)\b.{0,30}\b(person|human|agent|someone|somebody|representative)\b"
    r"|\b(human|real person|live agent)\b.{0,10}\bplease\b"
    r"|\b(mit einem menschen|mitarbeiter sprechen|parler à (un|une) (humain|conseill|agent))",
    re.IGNORECASE,
)


def asks_for_person(text: str) -> bool:
    return bool(_ASKS_FOR_PERSON.search(text))


def conversation_group(conversation_id: Any) -> str:
    return f"conversation.{uuid.UUID(str(conversation_id)).hex}"


def _get(conversation_id: Any) -> Conversation:
    """Staff side: any conversation, whoever the visitor (the visitor side passes its own)."""
    return get_visitor_conversation(conversation_id, None)


def _transition(conversation: Conversation, name: str, *args) -> None:
    try:
        with transaction.atomic():
            getattr(conversation, name)(*args)
            conversation.save()
    except (TransitionNotAllowed, ConcurrentTransition) as exc:
        raise ChatError(
            "already_claimed" if name == "claim" else "not_allowed",
            "Another agent has already taken this conversation."
            if name == "claim"
            else f"The conversation is {conversation.status}; that is not possible now.",
        ) from exc


async def _announce(conversation: Conversation) -> None:
    layer = get_channel_layer()
    frame = state_frame(conversation)
    await layer.group_send(conversation_group(conversation.id), {"type": "chat.frame", "frame": frame})
    await layer.group_send(
        CONSOLE_GROUP, {"type": "console.changed", "conversation": await sync_to_async(summary)(conversation)}
    )


async def request_person(conversation: Conversation) -> Conversation:
    """The visitor asked for a person: into the queue (asking again while queued is a no-op)."""
    if conversation.status == Conversation.Status.AGENT:
        return conversation
    if conversation.status == Conversation.Status.CLOSED:
        raise ChatError("conversation_closed", "This conversation is closed; start a new one.")
    await sync_to_async(_transition)(conversation, "request_person")
    await _announce(conversation)
    return conversation


async def ask_for_person(conversation: Conversation) -> dict[str, Any] | None:
    """The visitor asked for a person (or the assistant handed over after a fallback): with an
    agent online, into the queue (returns None; the state frame goes to the conversation's
    group); with nobody online, nothing is queued and the offline frame to send the visitor is
    returned (assistant/chat/availability.py), so no question waits where nobody looks."""
    if conversation.status == Conversation.Status.AGENT:
        return None
    if conversation.status == Conversation.Status.CLOSED:
        raise ChatError("conversation_closed", "This conversation is closed; start a new one.")
    if await sync_to_async(presence.agents_online)():
        await request_person(conversation)
        return None
    return await sync_to_async(availability.offer)(conversation)


async def announce_ticket(conversation: Conversation, frame: dict[str, Any], was_queued: bool) -> None:
    """The conversation became a desk ticket: every tab of the visitor learns it; when it had
    been waiting in the live queue, the consoles see it leave."""
    layer = get_channel_layer()
    await layer.group_send(conversation_group(conversation.id), {"type": "chat.frame", "frame": frame})
    if was_queued:
        await layer.group_send(
            CONSOLE_GROUP,
            {"type": "console.changed", "conversation": await sync_to_async(summary)(conversation)},
        )


async def claim(conversation_id: Any, agent) -> Conversation:
    conversation = await sync_to_async(_get)(conversation_id)
    await sync_to_async(_transition)(conversation, "claim", agent)
    await _announce(conversation)
    return conversation


async def hand_back(conversation_id: Any, agent) -> Conversation:
    conversation = await sync_to_async(_get)(conversation_id)
    _check_holder(conversation, agent)
    await sync_to_async(_transition)(conversation, "hand_back")
    await _announce(conversation)
    return conversation


async def close(conversation_id: Any, agent) -> Conversation:
    conversation = await sync_to_async(_get)(conversation_id)
    if conversation.status == Conversation.Status.AGENT:
        _check_holder(conversation, agent)
    await sync_to_async(_transition)(conversation, "close")
    await _announce(conversation)
    return conversation


def _check_holder(conversation: Conversation, agent) -> None:
    if conversation.status == Conversation.Status.AGENT and conversation.agent_id != agent.pk:
        raise ChatError("not_yours", "Another agent has this conversation.")


async def agent_reply(conversation_id: Any, agent, text: str) -> Message:
    """An agent's message to the visitor; only the agent holding the conversation may send."""
    conversation = await sync_to_async(_get)(conversation_id)
    if conversation.status != Conversation.Status.AGENT or conversation.agent_id != agent.pk:
        raise ChatError("not_yours", "Claim the conversation before replying.")
    message = await sync_to_async(_store)(conversation, Message.Role.AGENT, text, agent)
    frame = agent_message_frame(message, agent)
    await get_channel_layer().group_send(
        conversation_group(conversation.id), {"type": "chat.frame", "frame": frame}
    )
    return message


async def agent_typing(conversation_id: Any, agent) -> dict[str, Any]:
    """The agent holding the conversation is writing: the visitor sees their name typing."""
    conversation = await sync_to_async(_get)(conversation_id)
    if conversation.status != Conversation.Status.AGENT or conversation.agent_id != agent.pk:
        raise ChatError("not_yours", "Claim the conversation before replying.")
    frame = agent_typing_frame(conversation, agent)
    await get_channel_layer().group_send(
        conversation_group(conversation.id), {"type": "chat.frame", "frame": frame}
    )
    return frame


async def visitor_message_to_agent(conversation: Conversation, text: str) -> Message:
    """While queued or with an agent, the visitor's words go to the person, not the model."""
    message = await sync_to_async(_store)(conversation, Message.Role.USER, text, None)
    frame = {
        "type": "visitor_message",
        "conversation": str(conversation.id),
        "text": text,
        "message": str(message.pk),
    }
    await get_channel_layer().group_send(
        conversation_group(conversation.id), {"type": "chat.frame", "frame": frame}
    )
    return message


def _store(conversation: Conversation, role: str, text: str, author) -> Message:
    """Store one relayed message. The visitor may erase the conversation at any moment (found by
    the websocket fuzzer: an agent's reply racing an erase failed its foreign key at commit), so
    the row is locked where the database can, and a vanished conversation is a clear error."""
    try:
        with transaction.atomic():
            if not Conversation.objects.select_for_update().filter(pk=conversation.pk).exists():
                raise ChatError("unknown_conversation", "That conversation does not exist.")
            message = Message.objects.create(conversation=conversation, role=role, text=text, author=author)
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=message.created_at)
    except IntegrityError as exc:  # SQLite checks the key at commit, after the erase won
        raise ChatError("unknown_conversation", "That conversation does not exist.") from exc
    return message

"""The website assistant's conversations as the agents' console, the chat websocket and the API
show them: the queue's summary, the history, the handoff state frame, an agent's message frame."""

from __future__ import annotations

from typing import Any

from assistant.models import Conversation, Message
from core.present import iso


def agent_name(user) -> str:
    if user is None:
        return ""
    return user.get_short_name() or user.get_full_name() or user.get_username()


def summary(conversation: Conversation) -> dict[str, Any]:
    """A conversation as the console's queue lists it."""
    last = conversation.messages.filter(role=Message.Role.USER).order_by("-id").first()  # the visitor
    return {
        "id": str(conversation.id),
        "status": conversation.status,
        "agent": agent_name(conversation.agent),
        "agent_id": conversation.agent_id,
        "site": conversation.site.name if conversation.site else "",
        "collection": conversation.collection,
        "waiting_since": iso(conversation.handoff_at),
        "updated_at": conversation.updated_at.isoformat(),
        "last": last.text[:160] if last else "",
    }


def history(conversation: Conversation) -> list[dict[str, Any]]:
    return [
        {
            "id": str(m.pk),
            "role": m.role,
            "text": m.text,
            "agent": agent_name(m.author) if m.role == Message.Role.AGENT else None,
            "citations": m.citations,
            "status": m.status,
        }
        for m in conversation.messages.select_related("author")
    ]


def state_frame(conversation: Conversation) -> dict[str, Any]:
    state = {
        Conversation.Status.BOT: "bot",
        Conversation.Status.QUEUED: "queued",
        Conversation.Status.AGENT: "joined",
        Conversation.Status.CLOSED: "closed",
    }[conversation.status]
    return {"type": "handoff", "state": state, "agent": agent_name(conversation.agent) or None}


def agent_message_frame(message: Message, agent) -> dict[str, Any]:
    return {
        "type": "agent_message",
        "text": message.text,
        "agent": agent_name(agent),
        "message": str(message.pk),
    }

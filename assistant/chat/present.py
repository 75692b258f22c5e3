"""The website assistant's conversations as the agents' console, the chat websocket and the API
show them: the queue's summary, the history, the handoff state frame, an agent's message frame."""

from __future__ import annotations

from typing import Any

from assistant.models import Conversation, Message
from core.present import iso


def agent_name(user) -> str:
    """What visitors see of an agent: their full name, else their username. Never the email."""
    if user is None:
        return ""
    return user.get_full_name().strip() or user.get_username()


def initials(name: str) -> str:
    """The avatar's letters: 'Maria Jones' -> 'MJ', 'admin' -> 'A'."""
    words = [w for w in name.replace(".", " ").replace("_", " ").split() if w[:1].isalnum()]
    if not words:
        return ""
    letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return letters.upper()


def agent_fields(user) -> dict[str, Any]:
    """The agent as every visitor frame carries them: {"agent": name, "initials": "MJ"}."""
    if user is None:
        return {"agent": None}
    name = agent_name(user)
    return {"agent": name, "initials": initials(name)}


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
        # Nobody was online and the visitor left their address: the desk ticket it became.
        "ticket": conversation.ticket.reference if conversation.ticket_id else "",
    }


def history(conversation: Conversation) -> list[dict[str, Any]]:
    return [
        {
            "id": str(m.pk),
            "role": m.role,
            "text": m.text,
            "agent": agent_name(m.author) if m.role == Message.Role.AGENT else None,
            "initials": initials(agent_name(m.author)) if m.role == Message.Role.AGENT else None,
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
    return {"type": "handoff", "state": state, **agent_fields(conversation.agent)}


def agent_message_frame(message: Message, agent) -> dict[str, Any]:
    return {
        "type": "agent_message",
        "text": message.text,
        **agent_fields(agent),
        "message": str(message.pk),
    }


def agent_typing_frame(conversation: Conversation, agent) -> dict[str, Any]:
    return {"type": "agent_typing", "conversation": str(conversation.id), **agent_fields(agent)}

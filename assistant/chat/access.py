"""Finding a conversation for whoever asks: a visitor finds only their own, staff any; a missing,
malformed and someone else's id all answer the same."""

from __future__ import annotations

import uuid
from typing import Any

from assistant.chat.errors import ChatError
from assistant.models import Conversation


def get_visitor_conversation(conversation_id: Any, visitor: str | None) -> Conversation:
    """The conversation; with `visitor`, only that visitor's own (None: staff, any visitor's)."""
    try:
        pk = uuid.UUID(str(conversation_id))
        conversation = Conversation.objects.select_related("agent", "site", "ticket").get(pk=pk)
    except (ValueError, Conversation.DoesNotExist) as exc:
        # The same answer for a malformed and a missing id: ids are not to be probed.
        raise ChatError("unknown_conversation", "That conversation does not exist.") from exc
    if visitor is not None and conversation.visitor != visitor:
        raise ChatError("unknown_conversation", "That conversation does not exist.")
    return conversation

"""Website assistant API: conversations, and visitors' personal data (export, erasure).

Staff with the agent role. Visitors themselves export and erase over the chat websocket, where
their signed token proves who they are (assistant/consumers.py)."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from assistant import handoff
from assistant.models import Conversation
from assistant.privacy import erase_visitor, export_visitor
from config.api import ApiError, require_role
from config.roles import AGENT

router = Router(tags=["website assistant"])


@router.get("/conversations/{conversation_id}", summary="A conversation with every message's provenance")
def get_conversation(request: HttpRequest, conversation_id: str) -> dict[str, Any]:
    require_role(request, AGENT)
    try:
        conversation = Conversation.objects.select_related("agent", "site").get(pk=uuid.UUID(conversation_id))
    except (ValueError, Conversation.DoesNotExist) as exc:
        raise ApiError(404, "not_found", "No such conversation.") from exc
    messages = [
        {
            "id": m.pk,
            "role": m.role,
            "text": m.text,
            "status": m.status,
            "created_at": m.created_at.isoformat(),
            "agent": handoff.agent_name(m.author) or None,
            "model_version": m.model_version.key if m.model_version else None,
            "prompt_template": m.prompt_template,
            "retrieved": m.retrieved,
            "citations": m.citations,
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "first_token_ms": m.first_token_ms,
            "latency_ms": m.latency_ms,
            "feedback": [{"value": f.value, "comment": f.comment} for f in m.feedback.all()],
        }
        for m in conversation.messages.select_related("model_version", "author").prefetch_related("feedback")
    ]
    return {**handoff.summary(conversation), "visitor": conversation.visitor, "messages": messages}


@router.get("/visitors/{visitor}/export", summary="Everything stored about a visitor (GDPR access)")
def export(request: HttpRequest, visitor: str) -> dict[str, Any]:
    require_role(request, AGENT)
    data = export_visitor(visitor)
    if not data["conversations"]:
        raise ApiError(404, "not_found", "Nothing is stored for that visitor.")
    return data


@router.delete("/visitors/{visitor}", response={204: None}, summary="Erase a visitor's conversations")
def erase(request: HttpRequest, visitor: str):
    require_role(request, AGENT)
    if not erase_visitor(visitor):
        raise ApiError(404, "not_found", "Nothing is stored for that visitor.")
    return Status(204, None)

"""Website assistant API: conversations, and visitors' personal data (export, erasure).

Staff with the agent role. Visitors themselves export and erase over the chat websocket, where
their signed token proves who they are (assistant/chat/consumers.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from assistant.chat import present
from assistant.chat.access import get_visitor_conversation
from assistant.chat.errors import ChatError
from assistant.chat.privacy import erase_visitor, export_visitor
from core.auth import require_api_role
from core.errors import DomainError
from core.roles import AGENT

router = Router(tags=["website assistant"])


@router.get("/conversations/{conversation_id}", summary="A conversation with every message's provenance")
def get_conversation(request: HttpRequest, conversation_id: str) -> dict[str, Any]:
    require_api_role(request, AGENT)
    try:
        conversation = get_visitor_conversation(conversation_id, None)
    except ChatError as exc:
        raise DomainError("not_found", "No such conversation.", 404) from exc
    messages = [
        {
            "id": m.pk,
            "role": m.role,
            "text": m.text,
            "status": m.status,
            "created_at": m.created_at.isoformat(),
            "agent": present.agent_name(m.author) or None,
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
    return {**present.summary(conversation), "visitor": conversation.visitor, "messages": messages}


@router.get("/visitors/{visitor}/export", summary="Everything stored about a visitor (GDPR access)")
def export(request: HttpRequest, visitor: str) -> dict[str, Any]:
    require_api_role(request, AGENT)
    data = export_visitor(visitor)
    if not data["conversations"]:
        raise DomainError("not_found", "Nothing is stored for that visitor.", 404)
    return data


@router.delete("/visitors/{visitor}", response={204: None}, summary="Erase a visitor's conversations")
def erase(request: HttpRequest, visitor: str):
    require_api_role(request, AGENT)
    if not erase_visitor(visitor):
        raise DomainError("not_found", "Nothing is stored for that visitor.", 404)
    return Status(204, None)

"""Website assistant API: conversations, and visitors' personal data (export, erasure).

Staff with the agent role. Visitors themselves export and erase over the chat websocket, where
their signed token proves who they are (assistant/chat/consumers.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status

from assistant.chat import handoff
from assistant.chat.actions import get_visitor_conversation
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


class Correction(Schema):
    answer: str


@router.post(
    "/messages/{message_id}/correct",
    summary="Correct an assistant answer; the correction is kept as a training example",
)
def correct(request: HttpRequest, message_id: int, body: Correction) -> dict[str, Any]:
    require_api_role(request, AGENT)
    from assistant.learning.corrections import CorrectionError, do_correct_answer

    try:
        example = do_correct_answer(request.user, message_id, body.answer)
    except CorrectionError as exc:
        raise DomainError(exc.code, exc.message, exc.status) from exc
    return {"training_example": example.pk, "message": message_id}


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


@router.post(
    "/inbound/mail",
    auth=None,
    response={202: dict},
    summary="Inbound mail webhook: a raw MIME message, signed with HMAC-SHA256 of the body",
)
def inbound_mail(request: HttpRequest):
    """For mail providers' inbound webhooks. The body is the raw message (message/rfc822); the
    header X-Parley-Signature is the hex HMAC-SHA256 of the body under MAIL_INBOUND_SECRET.
    The mail is stored and queued ("received"; "duplicate" for the same bytes again): it is
    parsed by the worker, never in the web process."""
    import hashlib
    import hmac

    from django.conf import settings

    from assistant.desk.inbound import store_raw

    secret = settings.MAIL_INBOUND_SECRET
    if not secret:
        raise DomainError("not_found", "The inbound mail webhook is not configured.", 404)
    # Read from the stream with our own limit (mail is bigger than Django's form-body limit).
    body = request.read(settings.MAIL_MAX_MESSAGE_BYTES + 1)
    if len(body) > settings.MAIL_MAX_MESSAGE_BYTES:
        raise DomainError("too_large", "The message is over the size limit.", 413)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Parley-Signature", "")):
        raise DomainError("bad_signature", "The signature does not match the body.", 401)
    if not body.strip():
        raise DomainError("empty_message", "The body is empty.", 400)
    inbound = store_raw(body, source="http")
    return Status(202, {"id": inbound.pk, "status": inbound.status})

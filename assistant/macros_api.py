"""Canned replies (macros) for admins: `GET/POST /api/macros`, `GET/PATCH/DELETE /api/macros/{id}`.
Agents insert them in the console and on desk tickets (assistant/copilot.py); only admins manage
them, here or in the Django admin. Every change is in the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Schema, Status

from assistant.models.macros import VARIABLES, Macro, validate_body, variables_in
from core.audit import record_audit
from core.auth import require_api_role
from core.errors import DomainError
from core.roles import ADMIN, AGENT, has_role

router = Router(tags=["canned replies"])
MAX_TITLE_CHARS = 120


class MacroIn(Schema):
    title: str
    body: str
    agent: str | None = None  # a username: only that agent sees it; null: every agent


class MacroPatch(Schema):
    title: str | None = None
    body: str | None = None
    agent: str | None = None


def _data(macro: Macro) -> dict[str, Any]:
    unknown = macro.unknown_variables
    return {
        "id": macro.pk,
        "title": macro.title,
        "body": macro.body,
        "agent": macro.agent.get_username() if macro.agent else None,
        "shared": macro.agent_id is None,
        "variables": variables_in(macro.body),
        "unknown_variables": unknown,
        "warning": f"Not a variable: {', '.join('{' + n + '}' for n in unknown)}; it stays as written. "
        f"Variables: {', '.join('{' + n + '}' for n in VARIABLES)}."
        if unknown
        else "",
        "created_by": macro.created_by.get_username() if macro.created_by else None,
        "created_at": macro.created_at.isoformat(),
        "updated_at": macro.updated_at.isoformat(),
    }


def _text(value: str, what: str) -> str:
    if "\x00" in value:
        raise DomainError("bad_request", f"The {what} contains characters that are not text.", 400)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DomainError("bad_request", f"The {what} contains characters that are not text.", 400) from exc
    return value


def _title(value: str) -> str:
    title = " ".join(_text(value, "title").split())
    if not title:
        raise DomainError("bad_request", "Give the canned reply a title.", 400)
    if len(title) > MAX_TITLE_CHARS:
        raise DomainError("bad_request", f"A title is limited to {MAX_TITLE_CHARS} characters.", 400)
    return title


def _body(value: str) -> str:
    body = _text(value, "text").strip()
    try:
        validate_body(body)
    except ValidationError as exc:
        raise DomainError("bad_request", exc.messages[0], 400) from exc
    return body


def _agent(username: str | None):
    if username is None:
        return None
    user = get_user_model().objects.filter(username=_text(username, "username")[:150]).first()
    if user is None or not has_role(user, AGENT):
        raise DomainError("bad_request", "No agent has that username.", 400)
    return user


def _macro(request: HttpRequest, macro_id: int) -> Macro:
    require_api_role(request, ADMIN)
    macro = Macro.objects.select_related("agent", "created_by").filter(pk=macro_id).first()
    if macro is None:
        raise DomainError("not_found", "No such canned reply.", 404)
    return macro


@router.get("/macros", summary="Every canned reply, shared and per agent")
def list_macros(request: HttpRequest) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    macros = Macro.objects.select_related("agent", "created_by")
    return {"items": [_data(m) for m in macros], "variables": VARIABLES}


@router.post("/macros", response={201: dict}, summary="Add a canned reply")
def create_macro(request: HttpRequest, payload: MacroIn):
    require_api_role(request, ADMIN)
    macro = Macro.objects.create(
        title=_title(payload.title),
        body=_body(payload.body),
        agent=_agent(payload.agent),
        created_by=request.user,
    )
    record_audit(request.user, "macro_created", target_type="macro", target_id=macro.pk, title=macro.title)
    return Status(201, _data(macro))


@router.get("/macros/{macro_id}", summary="One canned reply")
def get_macro(request: HttpRequest, macro_id: int) -> dict[str, Any]:
    return _data(_macro(request, macro_id))


@router.patch("/macros/{macro_id}", summary="Change a canned reply's title, text or agent")
def update_macro(request: HttpRequest, macro_id: int, payload: MacroPatch) -> dict[str, Any]:
    macro = _macro(request, macro_id)
    given = payload.model_fields_set
    if "title" in given:
        macro.title = _title(payload.title or "")
    if "body" in given:
        macro.body = _body(payload.body or "")
    if "agent" in given:
        macro.agent = _agent(payload.agent)
    macro.save()
    record_audit(request.user, "macro_updated", target_type="macro", target_id=macro.pk, fields=sorted(given))
    return _data(macro)


@router.delete("/macros/{macro_id}", response={204: None}, summary="Delete a canned reply")
def delete_macro(request: HttpRequest, macro_id: int):
    macro = _macro(request, macro_id)
    record_audit(request.user, "macro_deleted", target_type="macro", target_id=macro.pk, title=macro.title)
    macro.delete()
    return Status(204, None)

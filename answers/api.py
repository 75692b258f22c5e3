"""Actions over the JSON API (admins): define, change, test and delete the lookups the assistant
makes in the company's systems, and read the record of every call. The secret is write-only:
sent to set or replace it ("" removes it), never returned (`secret_set` says whether one is)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema, Status

from answers.lookups.manage import action_dict, call_dict, do_delete_action, do_save_action, do_test_action
from answers.models import Action, ActionCall
from core.auth import require_api_role
from core.roles import ADMIN

router = Router(tags=["actions"])


class ActionFields(Schema):
    name: str | None = None
    enabled: bool | None = None
    collection: str | None = None
    examples: str | list[str] | None = None
    parameters: list[dict[str, Any]] | None = None
    kind: str | None = None
    url: str | None = None
    method: str | None = None
    headers: dict[str, str] | None = None
    secret: str | None = None
    timeout_seconds: float | None = None
    reply_template: str | None = None
    not_found_template: str | None = None
    mcp_transport: str | None = None
    mcp_target: str | None = None
    mcp_tool: str | None = None


class TestValues(Schema):
    parameters: dict[str, str] | None = None


class CallQuery(Schema):
    action: int | None = None
    status: str = ""
    limit: int = 100


def _fields(body: ActionFields) -> tuple[dict[str, Any], str | None]:
    fields = body.dict(exclude_unset=True)
    secret = fields.pop("secret", None)
    fields = {k: v for k, v in fields.items() if v is not None}
    if isinstance(fields.get("examples"), list):
        fields["examples"] = "\n".join(str(line) for line in fields["examples"])
    return fields, secret


@router.get("/actions", summary="The actions: lookups the assistant makes in the company's systems")
def list_actions(request: HttpRequest) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    return {"items": [action_dict(a) for a in Action.objects.all()]}


@router.post("/actions", summary="Define an action", response={201: dict[str, Any]})
def create_action(request: HttpRequest, body: ActionFields) -> Status[dict[str, Any]]:
    require_api_role(request, ADMIN)
    fields, secret = _fields(body)
    action = do_save_action(request.user, Action(), fields, secret)
    return Status(201, action_dict(action))


@router.get("/actions/calls", summary="The record of action calls, newest first")
def list_calls(request: HttpRequest, query: Query[CallQuery]) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    calls = ActionCall.objects.all()
    if query.action is not None:
        calls = calls.filter(action_id=query.action)
    if query.status:
        calls = calls.filter(status=query.status)
    limit = min(max(query.limit, 1), 500)
    return {"items": [call_dict(c) for c in calls[:limit]]}


@router.get("/actions/{action_id}", summary="One action")
def get_action(request: HttpRequest, action_id: int) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    return action_dict(get_object_or_404(Action, pk=action_id))


@router.patch("/actions/{action_id}", summary="Change an action (only the fields sent)")
def change_action(request: HttpRequest, action_id: int, body: ActionFields) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    action = get_object_or_404(Action, pk=action_id)
    fields, secret = _fields(body)
    return action_dict(do_save_action(request.user, action, fields, secret))


@router.delete(
    "/actions/{action_id}", summary="Delete an action (its call records stay)", response={204: None}
)
def delete_action(request: HttpRequest, action_id: int) -> Status[None]:
    require_api_role(request, ADMIN)
    do_delete_action(request.user, get_object_or_404(Action, pk=action_id))
    return Status(204, None)


@router.post("/actions/{action_id}/test", summary="Call an action with sample values and see the reply")
def test_action(request: HttpRequest, action_id: int, body: TestValues) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    action = get_object_or_404(Action, pk=action_id)
    reply = do_test_action(request.user, action, body.parameters)
    return {"status": reply.status, "reply": reply.text, "call": call_dict(reply.call)}

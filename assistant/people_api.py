"""A person's data by email address (GDPR access and erasure) for admins: the JSON API.

`GET /api/people/{email}/export` and `DELETE /api/people/{email}`; the same as
`manage.py export_person` / `erase_person`. The address in the path is personal data: the access
log's filter redacts it (config/logfilters.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from assistant.people import PersonError, erase_person, export_person
from config.api import ApiError, require_role
from config.roles import ADMIN

router = Router(tags=["personal data"])


@router.get("/people/{email}/export", summary="Everything stored about a person, by email address")
def export(request: HttpRequest, email: str) -> dict[str, Any]:
    require_role(request, ADMIN)
    try:
        return export_person(email, actor=request.user)
    except PersonError as exc:
        raise ApiError(400, exc.code, exc.message) from exc


@router.delete("/people/{email}", summary="Erase a person's data everywhere (idempotent)")
def erase(request: HttpRequest, email: str) -> dict[str, Any]:
    require_role(request, ADMIN)
    try:
        return {"erased": erase_person(email, actor=request.user)}
    except PersonError as exc:
        raise ApiError(400, exc.code, exc.message) from exc

"""A person's data by email address (GDPR access and erasure) for admins: the JSON API.

`GET /api/people/{email}/export` and `DELETE /api/people/{email}`; the same as
`manage.py export_person` / `erase_person`. The address in the path is personal data: the access
log's filter redacts it (config/logfilters.py)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from core.auth import require_api_role
from core.errors import DomainError
from core.roles import ADMIN
from governance.people import PersonError, erase_person, export_person

router = Router(tags=["personal data"])


@router.get("/people/{email}/export", summary="Everything stored about a person, by email address")
def export(request: HttpRequest, email: str) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    try:
        return export_person(email, actor=request.user)
    except PersonError as exc:
        raise DomainError(exc.code, exc.message, 400) from exc


@router.delete("/people/{email}", summary="Erase a person's data everywhere (idempotent)")
def erase(request: HttpRequest, email: str) -> dict[str, Any]:
    require_api_role(request, ADMIN)
    try:
        return {"erased": erase_person(email, actor=request.user)}
    except PersonError as exc:
        raise DomainError(exc.code, exc.message, 400) from exc

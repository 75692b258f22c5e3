"""The audit log over the JSON API (admins and auditors): `GET /api/audit` with the console
page's filters. A read is a copy taken out of Parley, so it is itself audited."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Schema

from core.auth import require_api_role
from core.errors import DomainError
from core.roles import ADMIN, AUDITOR
from governance import audit_export, audit_log

router = Router(tags=["governance"])


class AuditQuery(Schema):
    action: str = ""
    actor: str = ""
    target_type: str = ""
    target_id: str = ""
    since: str = ""  # ISO date or date-time, inclusive
    until: str = ""  # ISO date (to the end of that day) or date-time, exclusive
    page: int = 1
    per_page: int = audit_log.PER_PAGE


@router.get("/audit", summary="The audit log, newest first: every trail with model versions and sources")
def read_audit(request: HttpRequest, query: Query[AuditQuery]) -> dict[str, Any]:
    require_api_role(request, ADMIN, AUDITOR)
    form = audit_export.AuditFilterForm({k: v for k, v in query.dict().items() if v not in ("", None)})
    if not form.is_valid():
        raise DomainError("bad_filter", "Not valid: " + ", ".join(form.errors) + ".", 400)
    number, per_page = form.cleaned_data["page"] or 1, form.cleaned_data["per_page"] or audit_log.PER_PAGE
    found = audit_export.do_export(request.user, form.filters(), "api", number, per_page)
    return {
        "items": [entry.as_dict() for entry in found.entries],
        "page": found.number,
        "per_page": found.per_page,
        "has_next": found.has_next,
    }

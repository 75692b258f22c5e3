"""Governance pages of the staff console: the settings (admins) and the audit log with its
downloads (admins and auditors). Changes go through governance/actions.py; reading the log
through governance/audit_log.py."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods

from core.models import GovernanceSettings
from core.roles import ADMIN, AUDITOR, role_required
from governance import audit_export, audit_log
from governance.actions import (
    RETENTION_FIELDS,
    SWITCHES,
    GovernanceError,
    GovernanceForm,
    do_update_governance,
)


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def governance(request: HttpRequest) -> HttpResponse:
    """The governance settings: legal basis, redaction, retention periods."""
    current = GovernanceSettings.load()
    form, status = GovernanceForm(instance=current), 200
    if request.method == "POST":
        try:
            do_update_governance(request.user, request.POST)
        except GovernanceError as exc:
            form, status = exc.form, 400
            messages.error(request, exc.message)
        else:
            messages.success(request, "Settings saved.")
            return redirect("governance")
    context = {
        "form": form,
        "settings": current,
        "switches": [form[name] for name in SWITCHES],
        "retention": [form[name] for name in RETENTION_FIELDS],
        "title": "governance",
    }
    return render(request, "console/governance.html", context, status=status)


@require_GET
@role_required(ADMIN, AUDITOR)
def audit(request: HttpRequest) -> HttpResponse:
    """The audit log, newest first, with filters and downloads."""
    form = audit_export.AuditFilterForm(request.GET)
    if not form.is_valid():
        return render(request, "console/audit.html", {"form": form, "title": "audit log"}, status=400)
    filters = form.filters()
    found = audit_log.page(
        filters, form.cleaned_data["page"] or 1, form.cleaned_data["per_page"] or audit_log.PER_PAGE
    )
    query = urlencode(filters.as_params())
    return render(
        request, "console/audit.html", {"form": form, "page": found, "query": query, "title": "audit log"}
    )


@require_GET
@role_required(ADMIN, AUDITOR)
def audit_download(request: HttpRequest, fmt: str) -> HttpResponse:
    """The filtered log as CSV or JSON (up to EXPORT_MAX_ROWS entries); the download is audited."""
    form = audit_export.AuditFilterForm(request.GET)
    if not form.is_valid():
        return JsonResponse(
            {"error": {"code": "bad_filter", "message": "The filters are not valid."}}, status=400
        )
    found = audit_export.do_export(request.user, form.filters(), fmt).entries
    if fmt == "json":
        response: HttpResponse = JsonResponse({"entries": [e.as_dict() for e in found]})
    else:
        response = HttpResponse(audit_export.to_csv(found), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="parley-audit.{fmt}"'
    return response

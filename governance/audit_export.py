"""The audit log's filters as people and programs give them, and its downloads: CSV or JSON,
each recorded as "audit.exported" (who took a copy of the log, in what form, with which
filters). Reading the log is governance/audit_log.py."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django import forms

from core.audit import record_audit
from governance.audit_log import (
    DATE_ONLY,
    EXPORT_MAX_ROWS,
    FIELDS,
    MAX_PER_PAGE,
    AuditFilters,
    AuditPage,
    Entry,
    page,
)


class AuditFilterForm(forms.Form):
    """The filters as the page, the downloads and the API take them (query parameters). A date
    alone in `until` means up to the end of that day."""

    action = forms.CharField(required=False, max_length=64, help_text="A prefix, e.g. ticket. or settings.")
    actor = forms.CharField(required=False, max_length=200, help_text="user:NAME, NAME, system, cli:...")
    target_type = forms.CharField(required=False, max_length=64)
    target_id = forms.CharField(required=False, max_length=200)
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)
    page = forms.IntegerField(required=False, min_value=1, max_value=10_000)
    per_page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PER_PAGE)

    def clean_until(self) -> datetime | None:
        until = self.cleaned_data.get("until")
        raw = (self.data.get("until") or "").strip()
        if until is not None and DATE_ONLY.match(raw):
            until += timedelta(days=1)
        return until

    def filters(self) -> AuditFilters:
        """The filters (call after is_valid())."""
        data = self.cleaned_data
        return AuditFilters(
            action=data["action"].strip(),
            actor=data["actor"].strip(),
            target_type=data["target_type"].strip(),
            target_id=data["target_id"].strip(),
            since=data["since"],
            until=data["until"],
        )


def to_csv(found: Iterable[Entry]) -> str:
    """Entries as CSV: sources and data as JSON text; a cell that starts like a formula gets a
    leading apostrophe (OWASP "CSV injection": reasons are typed by people)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    for entry in found:
        row = entry.as_dict()
        writer.writerow(
            _cell(json.dumps(row[name], sort_keys=True) if name in ("sources", "data") else row[name])
            for name in FIELDS
        )
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def do_export(
    user, filters: AuditFilters, fmt: str, number: int = 1, per_page: int = EXPORT_MAX_ROWS
) -> AuditPage:
    """Entries taken out of Parley (a download, or a page read over the API), recorded as
    "audit.exported": who took a copy of the log, in what form and with which filters."""
    result = page(filters, number, per_page)
    record_audit(
        user,
        "audit.exported",
        target_type="audit_log",
        format=fmt,
        filters=filters.as_params(),
        page=result.number,
        rows=len(result.entries),
    )
    return result

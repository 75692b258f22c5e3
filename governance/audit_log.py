"""Reading the audit log: one view over every trail Parley keeps.

Each trail stays where it is written (AuditEvent, the desk's TicketEvent, the studio's StateChange,
the registry's ModelEvent) and generated outputs carry their own provenance (drafts, chat answers,
generated article revisions). `page()` reads them as uniform entries, newest first:

    {at, actor, action, target_type, target_id, model_version, sources, reason, data}

Actions are namespaced by trail ("ticket.approve", "content.publish", "model.activated",
"draft.generated", "chat.answered", "content.generated"); AuditEvent actions are as recorded
("settings.changed", "retention.purged", ...). Actors are "user:NAME", or a text such as
"system", "beat", "cli:root". Sources are [{"title", "url", "chunks": [chunk ids]}].

Filters are applied in each trail's query, and each query is cut to the rows the requested page
can need before the results are merged: the cost grows with the page number, not with the size
of the log.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.db.models import Q, QuerySet

from assistant.models import Draft, Message, TicketEvent
from content.models import Revision, StateChange
from core.audit import record_audit
from core.models import AuditEvent
from inference.models import ModelEvent

PER_PAGE = 50
MAX_PER_PAGE = 500
EXPORT_MAX_ROWS = 10_000  # one download; narrow the dates for more
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIELDS = ("at", "actor", "action", "target_type", "target_id", "model_version", "sources", "reason", "data")


@dataclass(frozen=True)
class AuditFilters:
    action: str = ""  # a prefix: "ticket." or "settings.changed"
    actor: str = ""  # "user:alice" (or just "alice"), "system", "cli:root"
    target_type: str = ""
    target_id: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def as_params(self) -> dict[str, str]:
        """The filters as query parameters (for links and the export record)."""
        values = {
            "action": self.action,
            "actor": self.actor,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {k: v for k, v in values.items() if v}


@dataclass
class Entry:
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    model_version: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass
class AuditPage:
    entries: list[Entry]
    number: int
    per_page: int
    has_next: bool


def _user_actor(user) -> str:
    return f"user:{user.get_username()}" if user is not None else "system"


def _normal_actor(actor: str) -> str:
    actor = actor.strip()
    return actor if ":" in actor or actor in ("", "system", "beat") else f"user:{actor}"


def _cited(citations: Iterable[dict], retrieved: Iterable[dict]) -> list[dict[str, Any]]:
    """Citations with the chunk ids behind each (drafts and chat answers keep `source: n`)."""
    chunks: dict[Any, list] = {}
    for hit in retrieved or []:
        if isinstance(hit, dict) and "source" in hit:
            chunks.setdefault(hit["source"], []).append(hit.get("chunk"))
    return [
        {"title": c.get("title", ""), "url": c.get("url", ""), "chunks": chunks.get(c.get("n"), [])}
        for c in citations or []
        if isinstance(c, dict)
    ]


def _by_document(retrieved: Iterable[dict]) -> list[dict[str, Any]]:
    """A generated article's retrieved chunks, grouped by document."""
    documents: dict[Any, dict[str, Any]] = {}
    for hit in retrieved or []:
        if not isinstance(hit, dict):
            continue
        doc = documents.setdefault(
            hit.get("document"), {"title": hit.get("title", ""), "url": "", "chunks": []}
        )
        doc["chunks"].append(hit.get("chunk"))
    return list(documents.values())


@dataclass(frozen=True)
class Trail:
    """One source of entries: how to query it with the filters and turn a row into an entry."""

    namespace: str  # prefix of its actions ("" for AuditEvent: actions as stored)
    queryset: Callable[[], QuerySet]
    to_entry: Callable[[Any], Entry]
    actions: dict[str, Q] | None = None  # derived actions: name → rows; None: the `action` column
    target_type: str | None = None  # fixed; None: the `target_type` column
    target_field: str = "target_id"
    target_is_int: bool = True
    user_field: str | None = None  # actor from a user FK; None: the `actor` column
    time_field: str = "created_at"

    def rows(self, f: AuditFilters) -> QuerySet | None:
        """The trail's rows matching the filters, newest first; None when none can match."""
        qs = self.queryset()
        if f.action:
            if self.actions is not None:
                chosen = [
                    q for name, q in self.actions.items() if (self.namespace + name).startswith(f.action)
                ]
                if not chosen:
                    return None
                any_of = chosen[0]
                for q in chosen[1:]:
                    any_of |= q
                qs = qs.filter(any_of)
            elif f.action.startswith(self.namespace):
                qs = qs.filter(action__startswith=f.action[len(self.namespace) :])
            elif not self.namespace.startswith(f.action):
                return None
        if f.actor:
            actor = _normal_actor(f.actor)
            if self.user_field is None:
                qs = qs.filter(actor=actor)
            elif actor.startswith("user:"):
                qs = qs.filter(**{f"{self.user_field}__username": actor[5:]})
            elif actor == "system":
                qs = qs.filter(**{f"{self.user_field}__isnull": True})
            else:
                return None
        if f.target_type:
            if self.target_type is None:
                qs = qs.filter(target_type=f.target_type)
            elif f.target_type != self.target_type:
                return None
        if f.target_id:
            if self.target_is_int and not f.target_id.isdigit():
                return None
            qs = qs.filter(**{self.target_field: f.target_id})
        if f.since:
            qs = qs.filter(**{f"{self.time_field}__gte": f.since})
        if f.until:
            qs = qs.filter(**{f"{self.time_field}__lt": f.until})
        return qs.order_by(f"-{self.time_field}", "-pk")


def _audit_event(e: AuditEvent) -> Entry:
    data = dict(e.data)
    return Entry(
        e.created_at,
        e.actor,
        e.action,
        e.target_type,
        e.target_id,
        e.model_version,
        list(e.sources),
        str(data.pop("reason", "")),
        data,
    )


def _ticket_event(e: TicketEvent) -> Entry:
    data = {"from_status": e.from_status, "to_status": e.to_status, **e.data}
    return Entry(
        e.created_at,
        _user_actor(e.user),
        f"ticket.{e.action}",
        "ticket",
        str(e.ticket_id),
        reason=e.reason,
        data=data,
    )


def _state_change(e: StateChange) -> Entry:
    data = {"from_state": e.from_state, "to_state": e.to_state, **e.data}
    return Entry(
        e.created_at,
        _user_actor(e.user),
        f"content.{e.action}",
        "content_item",
        str(e.item_id),
        reason=e.reason,
        data=data,
    )


def _model_event(e: ModelEvent) -> Entry:
    data = {"kind": e.version.kind, "previous": e.previous.key if e.previous else None}
    return Entry(
        e.created_at,
        e.actor,
        f"model.{e.action}",
        "model_version",
        e.version.key,
        e.version.key,
        reason=e.reason,
        data=data,
    )


def _draft(d: Draft) -> Entry:
    return Entry(
        d.created_at,
        _user_actor(d.author),
        "draft.edited" if d.author_id else "draft.generated",
        "ticket",
        str(d.ticket_id),
        d.model_version.key if d.model_version else "",
        _cited(d.citations, d.retrieved),
        data={
            "draft": d.pk,
            "version": d.version,
            "prompt_template": d.prompt_template,
            "confidence": d.confidence,
            "low_confidence": d.low_confidence,
        },
    )


def _answer(m: Message) -> Entry:
    return Entry(
        m.created_at,
        "system",
        "chat.answered",
        "conversation",
        str(m.conversation_id),
        m.model_version.key if m.model_version else "",
        _cited(m.citations, m.retrieved),
        data={
            "message": m.pk,
            "prompt_template": m.prompt_template,
            "retrieved_chunks": [r.get("chunk") for r in m.retrieved if isinstance(r, dict)],
            "unanswered": m.unanswered,
            "status": m.status,
        },
    )


def _revision(r: Revision) -> Entry:
    # A revision has no model version of its own: a generated one shows the item's (the latest
    # generation's), which is the one that wrote it unless the item was regenerated since.
    item = r.item
    generated = r.author_id is None
    return Entry(
        r.created_at,
        _user_actor(r.author),
        "content.generated" if generated else "content.revised",
        "content_item",
        str(r.item_id),
        item.model_version.key if generated and item.model_version else "",
        _by_document(item.retrieved) if generated else [],
        data={
            "revision": r.number,
            "note": r.note,
            "prompt_template": item.prompt_template if generated else "",
        },
    )


TRAILS = (
    Trail("", lambda: AuditEvent.objects.all(), _audit_event, target_is_int=False),
    Trail(
        "ticket.",
        lambda: TicketEvent.objects.select_related("user"),
        _ticket_event,
        target_type="ticket",
        target_field="ticket_id",
        user_field="user",
    ),
    Trail(
        "content.",
        lambda: StateChange.objects.select_related("user"),
        _state_change,
        target_type="content_item",
        target_field="item_id",
        user_field="user",
    ),
    Trail(
        "model.",
        lambda: ModelEvent.objects.select_related("version", "previous"),
        _model_event,
        target_type="model_version",
        target_field="version__key",
        target_is_int=False,
    ),
    Trail(
        "draft.",
        lambda: Draft.objects.select_related("author", "model_version"),
        _draft,
        actions={"generated": Q(author__isnull=True), "edited": Q(author__isnull=False)},
        target_type="ticket",
        target_field="ticket_id",
        user_field="author",
    ),
    Trail(
        "chat.",
        lambda: Message.objects.filter(role=Message.Role.ASSISTANT).select_related("model_version"),
        _answer,
        actions={"answered": Q(pk__isnull=False)},
        target_type="conversation",
        target_field="conversation_id",
        target_is_int=False,
        user_field="author",  # always empty for answers: only "system" matches
    ),
    Trail(
        "content.",
        lambda: Revision.objects.select_related("author", "item__model_version"),
        _revision,
        actions={"generated": Q(author__isnull=True), "revised": Q(author__isnull=False)},
        target_type="content_item",
        target_field="item_id",
        user_field="author",
    ),
)


def entries(filters: AuditFilters, limit: int) -> list[Entry]:
    """The newest `limit` entries matching `filters`, across every trail."""
    per_trail = []
    for trail in TRAILS:
        rows = trail.rows(filters)
        if rows is not None:
            per_trail.append([trail.to_entry(row) for row in rows[:limit]])
    merged = heapq.merge(*per_trail, key=lambda e: e.at, reverse=True)
    return [entry for _, entry in zip(range(limit), merged, strict=False)]


def page(filters: AuditFilters, number: int = 1, per_page: int = PER_PAGE) -> AuditPage:
    number, per_page = max(number, 1), min(max(per_page, 1), EXPORT_MAX_ROWS)
    # One more than the page needs tells whether a next page exists.
    found = entries(filters, number * per_page + 1)
    start = (number - 1) * per_page
    return AuditPage(found[start : start + per_page], number, per_page, len(found) > start + per_page)


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

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

import heapq
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from assistant.models import Draft, Message, TicketEvent
from content.models import Revision, StateChange
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


def _sources(retrieved: Iterable[dict], citations: Iterable[dict] = ()) -> list[dict[str, Any]]:
    """The sources a generated output was written from, read from its provenance in the answer
    path's one shape (answers/provenance.py): the chunks given to the model, grouped by the
    source number they were given as, titled and addressed as its citations show them (chat
    answers, drafts), else by the chunks' own title (articles). Records without a source
    number are skipped: passages kept out of the prompt (`excluded`), a pinned answer's or a
    canned reply's; articles written before the one shape ({chunk, document, title, score})
    group by document."""
    groups: dict[Any, dict[str, Any]] = {}
    for hit in retrieved or []:
        if not isinstance(hit, dict) or "excluded" in hit:
            continue
        if "source" in hit:
            key: Any = ("source", hit["source"])
        elif "document" in hit:
            key = ("document", hit["document"])
        else:
            continue
        group = groups.setdefault(key, {"title": hit.get("title", ""), "url": "", "chunks": []})
        group["chunks"].append(hit.get("chunk"))
    cited = [c for c in citations or [] if isinstance(c, dict)]
    if cited:
        return [
            {
                "title": c.get("title", ""),
                "url": c.get("url", ""),
                "chunks": groups.get(("source", c.get("n")), {}).get("chunks", []),
            }
            for c in cited
        ]
    return list(groups.values())


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


def _decisions(trail: str, model: Any, target_type: str, target_field: str, field: str) -> Trail:
    """A DecisionRecord trail (core/transitions.py): the desk's TicketEvent (`status`) or the
    studio's StateChange (`state`)."""

    def read(e: Any) -> Entry:
        data = {
            f"from_{field}": getattr(e, f"from_{field}"),
            f"to_{field}": getattr(e, f"to_{field}"),
            **e.data,
        }
        return Entry(
            e.created_at,
            _user_actor(e.user),
            f"{trail}.{e.action}",
            target_type,
            str(getattr(e, target_field)),
            reason=e.reason,
            data=data,
        )

    return Trail(
        f"{trail}.",
        lambda: model.objects.select_related("user"),
        read,
        target_type=target_type,
        target_field=target_field,
        user_field="user",
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
        _sources(d.retrieved, d.citations),
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
        _sources(m.retrieved, m.citations),
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
        _sources(item.retrieved) if generated else [],
        data={
            "revision": r.number,
            "note": r.note,
            "prompt_template": item.prompt_template if generated else "",
        },
    )


TRAILS = (
    Trail("", lambda: AuditEvent.objects.all(), _audit_event, target_is_int=False),
    _decisions("ticket", TicketEvent, "ticket", "ticket_id", "status"),
    _decisions("content", StateChange, "content_item", "item_id", "state"),
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

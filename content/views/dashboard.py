"""The studio's dashboard: items by state, search and assignee, what awaits each reviewer, and
the new-brief form."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, F, Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from content import present
from content.briefs import BriefForm, create_brief
from content.errors import StudioError
from content.models import ContentItem
from content.views.base import EXPORTABLE, STATE_LABELS, State, editor_required, editors, with_dates

PAGE_SIZE = 50
AWAITING_REVIEW = (State.IN_REVIEW, State.CHANGES_REQUESTED)


def _failing(item: ContentItem) -> int:
    """Failing checks nobody has overridden yet."""
    return sum(
        1
        for c in item.checks
        if isinstance(c, dict) and c.get("status") == "fail" and c.get("id") not in item.overrides
    )


def _row(item: ContentItem, today: date) -> dict[str, Any]:
    overdue = bool(item.due_date and item.due_date < today and item.state not in EXPORTABLE)
    return {
        **with_dates(present.summary(item)),
        "state_label": STATE_LABELS.get(item.state, item.state),
        "failing": _failing(item),
        "overdue": overdue,
    }


def _dashboard(request: HttpRequest, form: BriefForm, status: int = 200) -> HttpResponse:
    state = request.GET.get("state", "")
    if state and state not in State.values:
        return HttpResponseBadRequest(f"state must be one of: {', '.join(State.values)}.")
    q, assignee = request.GET.get("q", "").strip(), request.GET.get("assignee", "").strip()
    mine = request.GET.get("mine") == "1"
    items = ContentItem.objects.select_related("brief", "assignee")
    if q:
        items = items.filter(Q(title__icontains=q) | Q(brief__keyphrase__icontains=q))
    if mine:
        items = items.filter(assignee=request.user)
    elif assignee:
        items = items.filter(assignee__username=assignee)
    # The tabs count what the other filters leave, so a search shows where its hits are.
    counts = dict(items.order_by().values_list("state").annotate(n=Count("id")))
    if state:
        items = items.filter(state=state)
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    today = timezone.localdate()
    kept = {k: v for k, v in {"q": q, "assignee": assignee, "mine": "1" if mine else ""}.items() if v}
    tabs = [{"label": "all", "count": sum(counts.values()), "query": urlencode(kept), "current": not state}]
    tabs += [
        {
            "label": STATE_LABELS[s],
            "count": counts.get(s, 0),
            "query": urlencode(kept | {"state": s}),
            "current": s == state,
        }
        for s in State.values
    ]
    return render(
        request,
        "studio/dashboard.html",
        {
            "tabs": tabs,
            "state": state,
            "state_label": STATE_LABELS.get(state, ""),
            "q": q,
            "assignee": assignee,
            "mine": mine,
            "page": page,
            "page_query": urlencode(kept | ({"state": state} if state else {})),
            "rows": [_row(i, today) for i in page],
            "editors": editors(),
            "reviewers": _reviewers(request, today),
            "form": form,
        },
        status=status,
    )


def _reviewers(request: HttpRequest, today: date) -> list[dict[str, Any]]:
    """Per editor, the assigned items that wait on them: in review or with changes requested."""
    waiting = (
        ContentItem.objects.filter(state__in=AWAITING_REVIEW, assignee__isnull=False)
        .select_related("brief", "assignee")
        .order_by(F("due_date").asc(nulls_last=True), "updated_at")
    )
    by_editor: dict[int, list] = defaultdict(list)
    people = {user.pk: user for user in editors()}
    for item in waiting:
        by_editor[item.assignee_id].append(_row(item, today))
        people.setdefault(item.assignee_id, item.assignee)  # assigned before losing the role
    return [
        {"name": user.get_username(), "is_me": pk == request.user.pk, "items": by_editor.get(pk, [])}
        for pk, user in sorted(people.items(), key=lambda pair: pair[1].get_username())
    ]


@require_GET
@editor_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, BriefForm())


@require_POST
@editor_required
def new_brief(request: HttpRequest) -> HttpResponse:
    """The new-brief form: the item is created and its generation queued, then its page opens.
    Invalid input comes back on the dashboard with the errors and everything typed kept."""
    form = BriefForm(request.POST)
    if form.is_valid():
        try:
            item = create_brief(request.user, form.cleaned_data)
        except StudioError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Brief saved: the article is being written.")
            return redirect("studio-item", item_id=item.pk)
    return _dashboard(request, form, status=400)

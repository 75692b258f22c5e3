"""What every studio page uses: the editor check, the item (or a 404), who items are assigned
to, the states' labels, and present.py's dicts with dates for the templates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from content import review
from content.errors import StudioError
from content.models import ContentItem
from core.roles import EDITOR, has_role, users_with_role

State = ContentItem.State
STATE_LABELS = {value: label.lower() for value, label in State.choices}
EXPORTABLE = (State.APPROVED, State.PUBLISHED)
# present's dicts carry ISO strings (the API's format); the templates want dates.
DATETIME_KEYS = {"updated_at", "at", "approved_at", "published_at", "requested_at", "finished_at"}


def editor_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous: to the login page; signed in without the editor role: 403."""

    @login_required
    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not has_role(request.user, EDITOR):
            raise PermissionDenied("This page is for editors.")
        return view(request, *args, **kwargs)

    return checked


def get_item_or_404(item_id: int) -> ContentItem:
    try:
        return review.get_item(item_id)
    except StudioError as exc:
        raise Http404(exc.message) from exc


def editors():
    """Who an item can be assigned to."""
    return users_with_role(EDITOR)


def with_dates(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: with_dates(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [with_dates(v) for v in value]
    if isinstance(value, str) and (key in DATETIME_KEYS or key == "due_date"):
        try:
            return date.fromisoformat(value) if key == "due_date" else datetime.fromisoformat(value)
        except ValueError:
            return value
    return value

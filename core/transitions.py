"""State changes with their record: the one way the desk's tickets and the studio's items move.

`run_transition` performs a django-fsm-2 transition, saves it only if the state is still the one
it was read with (ConcurrentTransitionMixin: of two people acting at once exactly one wins) and
writes the record in the same transaction, a savepoint, so a lost race leaves an outer
transaction usable. `DecisionRecord` is the shape of those records: who did what, when, why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition, can_proceed

from core.errors import DomainError

M = TypeVar("M", bound=models.Model)


class TransitionRefused(Exception):
    """`lost_race` False: not allowed from the current state; True: someone moved it first."""

    def __init__(self, current: str, *, lost_race: bool) -> None:
        super().__init__(current)
        self.current, self.lost_race = current, lost_race


def run_transition(obj: models.Model, name: str, field: str, record: Callable[[str], None]) -> str:
    """Run transition `name` of `obj` (state in `field`) and `record(before)`; returns `before`."""
    before: str = getattr(obj, field)
    method = getattr(obj, name)
    if not can_proceed(method):
        raise TransitionRefused(before, lost_race=False)
    try:
        with transaction.atomic():
            method()
            obj.save()
            record(before)
    except ConcurrentTransition as exc:
        obj.refresh_from_db()
        raise TransitionRefused(getattr(obj, field), lost_race=True) from exc
    return before


def move(
    obj: M,
    name: str,
    *,
    field: str,
    record: Callable[..., object],
    error: type[DomainError],
    lost_race: str,
    refused: str,
    user: object = None,
    reason: str = "",
    data: dict[str, object] | None = None,
) -> M:
    """Transition `name` of `obj` with its DecisionRecord: `record(action=, from_<field>=,
    to_<field>=, user=, reason=, data=)` creates the row (a bound `objects.create`). A refusal
    raises `error("conflict", ...)` with `lost_race` or `refused` formatted with `current` (the
    state now) and `state` (the same, in words)."""

    def write(before: str) -> None:
        record(
            action=name,
            **{f"from_{field}": before, f"to_{field}": getattr(obj, field)},
            user=user,
            reason=reason,
            data=data or {},
        )

    try:
        run_transition(obj, name, field, write)
    except TransitionRefused as exc:
        words = {"current": exc.current, "state": exc.current.replace("_", " ")}
        raise error("conflict", (lost_race if exc.lost_race else refused).format(**words)) from exc
    return obj


class DecisionRecord(models.Model):
    """Who did what to a ticket or an item, when and why (subclasses add what it was done to)."""

    action = models.CharField(max_length=32)  # a transition name, or "reassigned", "edited", ...
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

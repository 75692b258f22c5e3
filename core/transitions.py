"""State changes with their record: the one way the desk's tickets and the studio's items move.

`run_transition` performs a django-fsm-2 transition, saves it only if the state is still the one
it was read with (ConcurrentTransitionMixin: of two people acting at once exactly one wins) and
writes the record in the same transaction, a savepoint, so a lost race leaves an outer
transaction usable. `DecisionRecord` is the shape of those records: who did what, when, why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Workflow:
    """How one model's objects move: the state `field`, the DecisionRecord model that records
    each move (`record`, with its foreign key to the object named `owner`), and the `error`
    raised with code "conflict" on a refusal: `lost_race` when someone moved it first,
    `refused` when the move is not allowed from its state. The messages are formatted with
    `current` (the state now), `state` (the same in words), `action` (the move in words) and
    the caller's own words."""

    field: str
    record: type[models.Model]
    owner: str
    error: type[DomainError]
    lost_race: str
    refused: str

    def move(
        self,
        obj: M,
        name: str,
        *,
        user: object = None,
        reason: str = "",
        data: dict[str, object] | None = None,
        **words: str,
    ) -> M:
        """Transition `name` of `obj`, recorded with who, why and `data`, or the error."""

        def write(before: str) -> None:
            self.record._default_manager.create(
                **{self.owner: obj},
                action=name,
                **{f"from_{self.field}": before, f"to_{self.field}": getattr(obj, self.field)},
                user=user,
                reason=reason,
                data=data or {},
            )

        try:
            run_transition(obj, name, self.field, write)
        except TransitionRefused as exc:
            said = {
                "current": exc.current,
                "state": exc.current.replace("_", " "),
                "action": name.replace("_", " "),
            }
            template = self.lost_race if exc.lost_race else self.refused
            raise self.error("conflict", template.format(**said, **words)) from exc
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

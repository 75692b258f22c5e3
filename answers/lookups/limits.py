"""Limits on actions, counted in Django's cache (shared by every process when REDIS_URL is set),
as the chat's limits are (assistant/chat/limits.py; answers/ cannot import it, so the few lines
are repeated here):

- calls per visitor per minute (ACTIONS_CALLS_PER_MINUTE_PER_VISITOR): a chat visitor, or a desk
  customer's address;
- calls per action per minute (ACTIONS_CALLS_PER_MINUTE_PER_ACTION): the company's system is
  not flooded through us;
- answers "not found" per visitor per hour (ACTIONS_NOT_FOUND_PER_HOUR_PER_VISITOR): someone
  guessing other customers' order numbers runs out of guesses quickly.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache


class LimitReached(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def _window(seconds: int) -> tuple[int, int]:
    now = time.time()
    start = math.floor(now / seconds) * seconds
    return int(start), max(1, math.ceil(start + seconds - now))


def _count(key: str, seconds: int) -> int:
    start, _ = _window(seconds)
    name = f"parley:actions:{key}:{start}"
    cache.add(name, 0, timeout=seconds * 2)
    return int(cache.incr(name))


def _peek(key: str, seconds: int) -> int:
    start, _ = _window(seconds)
    return int(cache.get(f"parley:actions:{key}:{start}") or 0)


def check_call(visitor: str, action_id: int) -> None:
    """Count one call; LimitReached when the visitor or the action is over its allowance."""
    if visitor and _peek(f"notfound:{visitor}", 3600) >= settings.ACTIONS_NOT_FOUND_PER_HOUR_PER_VISITOR:
        raise LimitReached(
            "You have looked up several things we could not find; please wait a while, or ask a person.",
            _window(3600)[1],
        )
    if visitor and _count(f"visitor:{visitor}", 60) > settings.ACTIONS_CALLS_PER_MINUTE_PER_VISITOR:
        raise LimitReached(
            "You have made many lookups in a short time; please wait a minute.", _window(60)[1]
        )
    if _count(f"action:{action_id}", 60) > settings.ACTIONS_CALLS_PER_MINUTE_PER_ACTION:
        raise LimitReached("This lookup is very busy just now; please try again in a minute.", _window(60)[1])


def record_not_found(visitor: str) -> None:
    if visitor:
        _count(f"notfound:{visitor}", 3600)

"""Whether anyone from the team is online: an agent with the live console open.

Each console socket holds one AgentPresence row (by its channel name), refreshed every
REFRESH_SECONDS while it is connected and deleted when it disconnects. A process that dies
cannot delete its rows; they stop counting once older than CHAT_PRESENCE_SECONDS. Kept in the
database, not in a process-local set, so with several server processes (Redis channel layer,
PostgreSQL) every process sees every agent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from assistant.models import AgentPresence


def presence_seconds() -> int:
    """How long a console counts as online after its last refresh (setting CHAT_PRESENCE_SECONDS)."""
    return int(settings.CHAT_PRESENCE_SECONDS)


def refresh_seconds() -> float:
    """How often an open console refreshes its row: three chances before it would expire."""
    return max(presence_seconds() / 3, 1.0)


def arrive(user, channel: str, now: datetime | None = None) -> None:
    """A console socket opened (or is still open: the same call refreshes it)."""
    AgentPresence.objects.update_or_create(
        channel=channel[:200], defaults={"user": user, "seen_at": now or timezone.now()}
    )


def leave(channel: str) -> None:
    """A console socket closed: the agent is offline unless another of their tabs is open."""
    AgentPresence.objects.filter(channel=channel[:200]).delete()


def agents_online(now: datetime | None = None) -> bool:
    """Whether an active agent has had a console open within CHAT_PRESENCE_SECONDS."""
    since = (now or timezone.now()) - timedelta(seconds=presence_seconds())
    return AgentPresence.objects.filter(seen_at__gte=since, user__is_active=True).exists()


def sweep(now: datetime | None = None) -> int:
    """Delete rows left behind by processes that died; returns how many (only housekeeping:
    expired rows already do not count)."""
    since = (now or timezone.now()) - timedelta(seconds=presence_seconds())
    return AgentPresence.objects.filter(seen_at__lt=since).delete()[0]

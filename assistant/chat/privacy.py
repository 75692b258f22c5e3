"""Personal data of website visitors: export, erasure and the retention purge (GDPR articles 15,
17 and 5(1)(e)). A visitor's conversations hold everything they typed and everything said to them;
conversations are never embedded or indexed, so deleting the rows removes the text everywhere
Parley keeps it (tests/test_privacy.py checks the database and the search index)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from assistant.models import Conversation
from core.models import GovernanceSettings

log = logging.getLogger(__name__)


def export_visitor(visitor: str) -> dict[str, Any]:
    """Everything stored about one visitor, as JSON-ready data."""
    conversations = Conversation.objects.filter(visitor=visitor).prefetch_related("messages__feedback")
    return {
        "visitor": visitor,
        "exported_at": timezone.now().isoformat(),
        "conversations": [
            {
                "id": str(c.id),
                "started_at": c.created_at.isoformat(),
                "status": c.status,
                "messages": [
                    {
                        "at": m.created_at.isoformat(),
                        "from": m.role,
                        "text": m.text,
                        "sources": [item.get("title") for item in m.citations],
                        "feedback": [
                            {"value": f.value, "comment": f.comment, "at": f.created_at.isoformat()}
                            for f in m.feedback.all()
                        ],
                    }
                    for m in c.messages.all()
                ],
            }
            for c in conversations
        ],
    }


def erase_visitor(visitor: str) -> int:
    """Delete the visitor's conversations with their messages and feedback; returns how many."""
    if not visitor:
        return 0
    with transaction.atomic():
        conversations = Conversation.objects.filter(visitor=visitor)
        count = conversations.count()
        conversations.delete()  # messages and feedback go with them (cascade)
    log.info("event=visitor_erased conversations=%d", count)
    return count


def purge_expired(now=None, *, dry_run: bool = False) -> int:
    """Delete conversations untouched for longer than the governance settings' message retention
    (GovernanceSettings.retention_messages_days, first set from CHAT_RETENTION_DAYS); returns
    how many. `dry_run`: only count them."""
    days = GovernanceSettings.load().retention_messages_days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    with transaction.atomic():
        expired = Conversation.objects.filter(updated_at__lt=cutoff)
        count = expired.count()
        if not dry_run:
            expired.delete()  # messages and feedback go with them (cascade)
    log.info("event=conversations_purged count=%d cutoff=%s dry_run=%s", count, cutoff.isoformat(), dry_run)
    return count

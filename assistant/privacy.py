"""Personal data of website visitors: export, erasure and the retention purge (GDPR articles 15,
17 and 5(1)(e)). A visitor's conversations hold everything they typed and everything said to them;
conversations are never embedded or indexed, so deleting the rows removes the text everywhere
Parley keeps it (tests/test_privacy.py checks the database and the search index)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from assistant.models import Conversation

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


def purge_expired(now=None) -> int:
    """Delete conversations untouched for longer than CHAT_RETENTION_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.CHAT_RETENTION_DAYS)
    with transaction.atomic():
        expired = Conversation.objects.filter(updated_at__lt=cutoff)
        count = expired.count()
        expired.delete()
    log.info("event=conversations_purged count=%d cutoff=%s", count, cutoff.isoformat())
    return count

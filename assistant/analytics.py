"""What the website assistant is worth, for the console: how many conversations, how many the
assistant resolved on its own, handoffs, thumbs-down, the most asked questions and the ones the
knowledge base could not answer; and the raw rows behind them for export (CSV or JSON)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef
from django.utils import timezone

from assistant.models import Conversation, Feedback, Message

_WORDS = re.compile(r"[\w']+")


def normalise(question: str) -> str:
    """Questions that differ only in case, punctuation and spacing count as one."""
    return " ".join(_WORDS.findall(question.lower()))


def _since(days: int):
    return timezone.now() - timedelta(days=days)


def summary(days: int = 30, top: int = 10) -> dict[str, Any]:
    since = _since(days)
    conversations = Conversation.objects.filter(created_at__gte=since)
    answered = conversations.filter(
        Exists(Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.ASSISTANT))
    )
    thumbs_down = Feedback.objects.filter(value=-1, message__conversation=OuterRef("pk"))
    resolved = answered.filter(handoff_at__isnull=True).exclude(Exists(thumbs_down))
    total = conversations.count()
    handoffs = conversations.filter(handoff_at__isnull=False).count()
    answers = Message.objects.filter(role=Message.Role.ASSISTANT, created_at__gte=since)
    feedback = Feedback.objects.filter(created_at__gte=since)
    questions = Message.objects.filter(role=Message.Role.USER, created_at__gte=since)
    asked = Counter(normalise(text) for text in questions.values_list("text", flat=True))
    unanswered_ids = answers.filter(unanswered=True).values_list("conversation_id", "id")
    gaps: Counter[str] = Counter()
    for conversation_id, answer_id in unanswered_ids:
        question = (
            Message.objects.filter(conversation_id=conversation_id, role=Message.Role.USER, id__lt=answer_id)
            .order_by("-id")
            .values_list("text", flat=True)
            .first()
        )
        if question:
            gaps[normalise(question)] += 1
    return {
        "days": days,
        "conversations": total,
        "answers": answers.count(),
        "resolution_rate": _rate(resolved.count(), total),
        "handoff_rate": _rate(handoffs, total),
        "thumbs_down_rate": _rate(feedback.filter(value=-1).count(), feedback.count()),
        "feedback": feedback.count(),
        "top_questions": asked.most_common(top),
        "unanswered_questions": gaps.most_common(top),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


FEEDBACK_FIELDS = ["created_at", "conversation", "message", "value", "comment", "question", "answer"]
CONVERSATION_FIELDS = [
    "id", "created_at", "site", "collection", "status", "handoff_at", "agent", "messages", "thumbs_down",
]  # fmt: skip


def feedback_rows(days: int = 30) -> list[dict[str, Any]]:
    rows = []
    for f in Feedback.objects.filter(created_at__gte=_since(days)).select_related("message"):
        question = (
            Message.objects.filter(
                conversation_id=f.message.conversation_id, role=Message.Role.USER, id__lt=f.message_id
            )
            .order_by("-id")
            .values_list("text", flat=True)
            .first()
        )
        rows.append(
            {
                "created_at": f.created_at.isoformat(),
                "conversation": str(f.message.conversation_id),
                "message": f.message_id,
                "value": f.value,
                "comment": f.comment,
                "question": question or "",
                "answer": f.message.text,
            }
        )
    return rows


def conversation_rows(days: int = 30) -> list[dict[str, Any]]:
    query = Conversation.objects.filter(created_at__gte=_since(days)).select_related("site", "agent")
    return [
        {
            "id": str(c.id),
            "created_at": c.created_at.isoformat(),
            "site": c.site.key if c.site else "",
            "collection": c.collection,
            "status": c.status,
            "handoff_at": c.handoff_at.isoformat() if c.handoff_at else "",
            "agent": c.agent.get_username() if c.agent else "",
            "messages": c.messages.count(),
            "thumbs_down": Feedback.objects.filter(message__conversation=c, value=-1).count(),
        }
        for c in query
    ]

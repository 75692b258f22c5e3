"""What the website assistant is worth, for the console: how many conversations, how many the
assistant resolved on its own, handoffs, thumbs-down, the most asked questions and the ones the
knowledge base could not answer; and the raw rows behind them for export (CSV or JSON).

A question is what a visitor asked the assistant: a visitor's message the assistant answered
(the next message in the conversation is the assistant's). Messages relayed to a person (after
a handoff, and the words asking for one) get no answer from the assistant and are not questions.
A question is not answered by the knowledge base when its answer was a decline or a "not sure"
with a person offered (`unanswered`), or the fixed reply after the model failed, stalled or took
too long (answers/fallback.py; the conversation then went to a person)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.utils import timezone

from assistant import copilot
from assistant.models import Conversation, Draft, Feedback, Message, OutboundMail, TicketEvent

_WORDS = re.compile(r"[\w']+")
# Finish reasons of an answer replaced by the fallback reply (answers/fallback.py: finish_reason).
FALLBACK_REASONS = ("stalled", "timeout", "busy", "error")


def normalise(question: str) -> str:
    """Questions that differ only in case, punctuation and spacing count as one."""
    return " ".join(_WORDS.findall(question.lower()))


def _since(days: int):
    return timezone.now() - timedelta(days=days)


def summary(days: int = 30, top: int = 10) -> dict[str, Any]:
    since = _since(days)
    conversations = Conversation.objects.filter(created_at__gte=since)
    answers_in = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.ASSISTANT)
    thumbs_down = Feedback.objects.filter(value=-1, message__conversation=OuterRef("pk"))
    # Resolved by the assistant: it gave a verified answer (every sentence supported by the
    # sources, or a pinned answer a person approved), never said it was unsure, and the visitor
    # neither asked for a person nor gave a thumbs-down. An answer that merely sounded right is
    # not a resolution.
    resolved = (
        conversations.filter(Exists(answers_in.filter(verified=True)), handoff_at__isnull=True)
        .exclude(Exists(answers_in.filter(unanswered=True)))
        .exclude(Exists(thumbs_down))
    )
    total = conversations.count()
    handoffs = conversations.filter(handoff_at__isnull=False).count()
    answers = Message.objects.filter(role=Message.Role.ASSISTANT, created_at__gte=since)
    feedback = Feedback.objects.filter(created_at__gte=since)
    questions = Message.objects.filter(role=Message.Role.USER, created_at__gte=since).alias(
        answered_by=_next_role("pk", "conversation_id")
    )
    asked = Counter(
        normalise(text)
        for text in questions.filter(answered_by=Message.Role.ASSISTANT).values_list("text", flat=True)
    )
    not_from_kb = answers.filter(
        Q(unanswered=True) | Q(status=Message.Status.FAILED) | Q(finish_reason__in=FALLBACK_REASONS)
    ).exclude(status=Message.Status.CANCELLED)
    unanswered = not_from_kb.annotate(question=_asked_before("pk", "conversation_id"))
    gaps = Counter(normalise(q) for q in unanswered.values_list("question", flat=True) if q)
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
        "suggestions": suggestions_sent(days),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


FEEDBACK_FIELDS = ["created_at", "conversation", "message", "value", "comment", "question", "answer"]
CONVERSATION_FIELDS = [
    "id", "created_at", "site", "collection", "status", "handoff_at", "agent", "messages", "thumbs_down",
]  # fmt: skip


def _asked_before(answer: str, conversation: str) -> Subquery:
    """The visitor's question just before an answer (outer fields name the answer's id and its
    conversation's), computed in the database: one query for a whole list."""
    return Subquery(
        Message.objects.filter(
            conversation_id=OuterRef(conversation), role=Message.Role.USER, id__lt=OuterRef(answer)
        )
        .order_by("-id")
        .values("text")[:1]
    )


def _next_role(message: str, conversation: str) -> Subquery:
    """Who wrote the message after a visitor's (outer fields name its id and conversation's):
    "assistant" when the assistant answered it."""
    return Subquery(
        Message.objects.filter(conversation_id=OuterRef(conversation), id__gt=OuterRef(message))
        .order_by("id")
        .values("role")[:1]
    )


def feedback_rows(days: int = 30) -> list[dict[str, Any]]:
    query = (
        Feedback.objects.filter(created_at__gte=_since(days))
        .select_related("message")
        .annotate(question=_asked_before("message_id", "message__conversation_id"))
    )
    return [
        {
            "created_at": f.created_at.isoformat(),
            "conversation": str(f.message.conversation_id),
            "message": f.message_id,
            "value": f.value,
            "comment": f.comment,
            "question": f.question or "",
            "answer": f.message.text,
        }
        for f in query
    ]


def conversation_rows(days: int = 30) -> list[dict[str, Any]]:
    query = (
        Conversation.objects.filter(created_at__gte=_since(days))
        .select_related("site", "agent")
        .annotate(
            n_messages=Count("messages", distinct=True),
            n_thumbs_down=Count("messages__feedback", filter=Q(messages__feedback__value=-1), distinct=True),
        )
    )
    return [
        {
            "id": str(c.id),
            "created_at": c.created_at.isoformat(),
            "site": c.site.key if c.site else "",
            "collection": c.collection,
            "status": c.status,
            "handoff_at": c.handoff_at.isoformat() if c.handoff_at else "",
            "agent": c.agent.get_username() if c.agent else "",
            "messages": c.n_messages,
            "thumbs_down": c.n_thumbs_down,
        }
        for c in query
    ]


# --- The copilot: suggestions sent as suggested ---------------------------------------------------


def _share(unedited: int, total: int) -> dict[str, Any]:
    return {"unedited": unedited, "total": total, "rate": _rate(unedited, total)}


def suggestions_sent(days: int = 30) -> dict[str, dict[str, Any]]:
    """How often agents send a suggestion as it was suggested (whitespace aside), in the chat
    and on the desk: {"chat": {"unedited", "total", "rate"}, "desk": {...}}.

    Chat: agents' replies marked when sent from an inserted suggestion (Message.suggestion).
    Desk: each approved reply (one per draft sent) that started from a suggestion: a knowledge-base
    suggestion inserted on the ticket page (a "suggestion_sent" event says whether it went out
    as suggested), or else the model's own draft for that mail, sent as written when the version
    sent is the model's (or an agent's with only whitespace changed). A reply an agent wrote with
    no draft to start from is no suggestion and not counted."""
    since = _since(days)
    chat = Message.objects.filter(role=Message.Role.AGENT, created_at__gte=since).exclude(suggestion="")
    unedited_chat = chat.filter(suggestion=Message.Suggestion.UNEDITED).count()
    return {"chat": _share(unedited_chat, chat.count()), "desk": _share(*_desk_suggestions(since))}


def _desk_suggestions(since) -> tuple[int, int]:
    sent = {
        mail.draft_id: mail.draft
        for mail in OutboundMail.objects.filter(created_at__gte=since).select_related("draft")
    }
    tickets = {draft.ticket_id for draft in sent.values()}
    inserted = {
        (event.ticket_id, event.data.get("draft")): bool(event.data.get("unedited"))
        for event in TicketEvent.objects.filter(action=copilot.DESK_SUGGESTION_EVENT, ticket_id__in=tickets)
        if isinstance(event.data, dict)
    }
    generated: dict[tuple[int, int | None], str] = {}  # the model's latest draft for each mail
    for draft in Draft.objects.filter(ticket_id__in=tickets, author__isnull=True).order_by("version"):
        if draft.body.strip():
            generated[(draft.ticket_id, draft.replying_to_id)] = draft.body
    unedited = total = 0
    for draft in sent.values():
        if (draft.ticket_id, draft.version) in inserted:
            total += 1
            unedited += inserted[(draft.ticket_id, draft.version)]
            continue
        model = generated.get((draft.ticket_id, draft.replying_to_id))
        if draft.author_id is None and draft.body.strip():
            total, unedited = total + 1, unedited + 1
        elif model is not None:
            total += 1
            unedited += copilot.unedited(draft.body, model)
    return unedited, total

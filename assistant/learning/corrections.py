"""Agents correct the assistant's chat answers; a correction is kept as a training example.

The example holds the visitor's question, the earlier turns, the sources the answer was written
from and the agent's answer, like an approved email reply does. Correcting the same answer again
replaces the earlier correction (one example per answer: the latest word of a person counts).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from assistant.models import Message, TrainingExample
from core.audit import record_audit
from core.errors import DomainError

log = logging.getLogger(__name__)


class CorrectionError(DomainError):
    pass


def do_correct_answer(user, message_id: int, answer: str) -> TrainingExample:
    answer = (answer or "").strip()
    if not answer:
        raise CorrectionError("empty_answer", "The corrected answer is empty.")
    if len(answer) > settings.CHAT_MAX_MESSAGE_CHARS * 4:
        raise CorrectionError("answer_too_long", "The corrected answer is too long.")
    try:
        message = Message.objects.select_related("conversation", "model_version").get(
            pk=message_id, role=Message.Role.ASSISTANT
        )
    except Message.DoesNotExist:
        raise CorrectionError("not_found", "No such assistant answer.", 404) from None
    earlier = list(message.conversation.messages.filter(id__lt=message.pk).order_by("id"))
    question = next((m for m in reversed(earlier) if m.role == Message.Role.USER), None)
    if question is None:
        raise CorrectionError("no_question", "That answer does not follow a visitor's question.")
    context = [
        {"role": "user" if m.role == Message.Role.USER else "assistant", "content": m.text}
        for m in earlier
        if m.pk != question.pk and m.role in (Message.Role.USER, Message.Role.ASSISTANT)
    ][-6:]
    with transaction.atomic():
        example, _ = TrainingExample.objects.update_or_create(
            message=message,
            defaults={
                "source": TrainingExample.Source.CHAT,
                "question": question.text,
                "answer": answer,
                "context": context,
                "sources": message.citations,
                "model_draft_unchanged": answer == message.text.strip(),
                "approved_by": user,
            },
        )
        record_audit(
            user,
            "chat.corrected",
            target_type="message",
            target_id=message.pk,
            model_version=message.model_version.key if message.model_version else "",
            sources=[c.get("title") for c in message.citations],
        )
    log.info("event=chat_answer_corrected message=%s", message.pk)
    return example

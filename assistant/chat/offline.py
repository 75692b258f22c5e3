"""Nobody from the team is online (the offer: assistant/chat/availability.py): instead of a queue
nobody watches, the visitor is told so, when to expect a reply (the site's opening hours,
assistant/models/hours.py), and asked for their email address; with it the conversation becomes
a desk ticket, answered by email like any mail.

Server → client: `{"type": "offline", "conversation", "open_now", "back_at", "back", "time_zone",
"reply_time", "ticket", "text"}` (the offer; `ticket` set when the conversation already has one).
Client → server: `{"type": "email", "conversation", "email", "name"?, "text"?}` (`text`: the
question, for a visitor who asked for a person before writing anything). Server → client:
`{"type": "ticket", "conversation", "email", "reference", "text"}`, once per conversation; the
same frame again answers a repeat. Errors of the email frame carry `"for": "email"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from assistant.chat.access import get_visitor_conversation
from assistant.chat.actions import storable
from assistant.chat.errors import ChatError
from assistant.chat.frames import message_text
from assistant.chat.handoff import asks_for_person
from assistant.chat.present import agent_name
from assistant.desk.inbound import open_chat_ticket
from assistant.models import Conversation, Message, Ticket

MAX_EMAIL_CHARS = 254  # what an SMTP path allows
MAX_NAME_CHARS = 200


def clean_email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ChatError("missing_email", "Please enter your email address.")
    email = value.strip()
    try:
        if len(email) > MAX_EMAIL_CHARS or not storable(email):
            raise ValidationError("too long or not text")
        validate_email(email)
    except ValidationError as exc:
        raise ChatError(
            "bad_email", "That does not look like an email address; please check it (like name@example.com)."
        ) from exc
    return email


def clean_name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not storable(value):
        raise ChatError("bad_name", "Your name must be plain text.")
    name = " ".join(value.split())
    if len(name) > MAX_NAME_CHARS:
        raise ChatError("bad_name", f"Your name is limited to {MAX_NAME_CHARS} characters.")
    return name


@dataclass(frozen=True)
class LeftEmail:
    conversation: Conversation
    ticket: Ticket
    created: bool  # False: the conversation had its ticket already (a repeat)
    was_queued: bool  # it left the live queue: the consoles are told


def leave_email(conversation_id: Any, visitor: str, email: Any, name: Any, text: Any) -> LeftEmail:
    """The visitor's address turns their conversation into a desk ticket: the transcript as the
    customer's first message, their address as the customer. One ticket per conversation:
    asking again returns the one there is (two at once: the chat's Message-ID is unique)."""
    email, name = clean_email(email), clean_name(name)
    question = message_text(text) if isinstance(text, str) and text.strip() else None
    try:
        with transaction.atomic():
            conversation = _locked(conversation_id, visitor)
            if conversation.ticket_id:
                return LeftEmail(conversation, conversation.ticket, False, False)
            if conversation.status == Conversation.Status.CLOSED:
                raise ChatError("conversation_closed", "This conversation is closed; start a new one.")
            if conversation.status == Conversation.Status.AGENT:
                raise ChatError(
                    "agent_joined", "Someone from our team has joined this chat; they will answer you here."
                )
            if question:
                Message.objects.create(conversation=conversation, role=Message.Role.USER, text=question)
            messages = list(conversation.messages.select_related("author").order_by("created_at", "id"))
            asked = [m.text for m in messages if m.role == Message.Role.USER]
            if not asked:
                raise ChatError(
                    "missing_question", "Please write your question too, so we can answer it by email."
                )
            was_queued = conversation.status == Conversation.Status.QUEUED
            ticket = open_chat_ticket(
                message_id=f"<chat-{conversation.id.hex}@parley.invalid>",
                email=email,
                name=name,
                subject=_subject(conversation, asked),
                text=_transcript(conversation, messages, email),
                question="\n\n".join(_questions(asked)),
            )
            conversation.move_to_email(ticket)
            conversation.save()
            return LeftEmail(conversation, ticket, True, was_queued)
    except IntegrityError:  # another tab's email frame won the race: its ticket stands
        with transaction.atomic():
            conversation = _locked(conversation_id, visitor)
        if conversation.ticket_id is None:
            raise
        return LeftEmail(conversation, conversation.ticket, False, False)


def _locked(conversation_id: Any, visitor: str) -> Conversation:
    get_visitor_conversation(conversation_id, visitor)  # the same answer for missing and foreign
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("site", "ticket")
        .get(pk=conversation_id)
    )


def _questions(asked: list[str]) -> list[str]:
    """What the visitor asked, without the requests for a person (which the desk cannot answer)
    unless that is all they wrote."""
    real = [text for text in asked if not asks_for_person(text)]
    return real or asked


def _subject(conversation: Conversation, asked: list[str]) -> str:
    first = " ".join(_questions(asked)[0].split())
    if len(first) > 80:
        first = first[:79].rstrip() + "…"
    where = conversation.site.name if conversation.site else "the website"
    return f"Chat on {where}: {first}"


def _transcript(conversation: Conversation, messages: list[Message], email: str) -> str:
    site = conversation.site
    where = f"{site.name} ({site.key})" if site else f"the website (knowledge base {conversation.collection})"
    started = timezone.localtime(conversation.created_at).strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"Website chat on {where}, started {started}.",
        f"Nobody from the team was online, so the visitor left their email address ({email}) "
        "for an answer by email.",
        "",
    ]
    for message in messages:
        if message.role == Message.Role.USER:
            who = "Visitor"
        elif message.role == Message.Role.AGENT:
            who = f"{agent_name(message.author) or 'Agent'} (team)"
        else:
            who = "Assistant"
        lines.append(f"{who}: {message.text}")
        lines.append("")
    return "\n".join(lines).strip()

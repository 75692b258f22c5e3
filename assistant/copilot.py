"""The agent copilot's pieces that the live console (assistant/chat/) and the email desk
(assistant/desk/) share: remembering the suggestions handed to an agent, so that the reply they
send can be counted as a suggestion sent unedited or edited (analytics), and canned replies
(macros) with their variables filled.

The suggestions themselves come from the chat's answer path (assistant/chat/copilot.py); this
module imports nothing from chat/ or desk/, so both may use it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db.models import Q, QuerySet

from assistant.models import Conversation, Draft, Message, Site, Ticket, TicketEvent
from assistant.models.macros import VARIABLE, VARIABLES, Macro
from core.errors import DomainError

log = logging.getLogger(__name__)

# How long a suggestion is remembered for counting the reply sent from it. An agent who inserts
# one and sends a day later is not measured (the reply still goes out).
SUGGESTION_SECONDS = 24 * 3600
SUGGESTION_ID_CHARS = 64
# The event a desk approval of an inserted suggestion records (TicketEvent.action, 32 characters).
DESK_SUGGESTION_EVENT = "suggestion_sent"


def _key(suggestion_id: str) -> str:
    return f"parley:suggestion:{suggestion_id}"


def remember(text: str, *, agent: Any, conversation: Any = None, ticket: Any = None) -> str:
    """Keep the text an agent was offered; returns the id their reply names when they send it."""
    suggestion_id = secrets.token_urlsafe(18)
    owner = {
        "agent": agent.pk,
        "conversation": str(conversation) if conversation is not None else None,
        "ticket": ticket,
    }
    cache.set(_key(suggestion_id), {"text": text, **owner}, timeout=SUGGESTION_SECONDS)
    return suggestion_id


def check_suggestion_id(value: Any) -> str | None:
    """A reply's `suggestion` as sent by a client: None (none), or an id; anything else refused
    before the reply is sent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > SUGGESTION_ID_CHARS or not value.isascii():
        raise DomainError("bad_suggestion", "The suggestion id is not one Parley gave out.")
    return value


def recall(
    suggestion_id: str | None, *, agent: Any, conversation: Any = None, ticket: Any = None
) -> str | None:
    """The suggestion's text, when it was handed to this agent for this conversation or ticket."""
    if not suggestion_id:
        return None
    kept = cache.get(_key(suggestion_id))
    if not isinstance(kept, dict) or kept.get("agent") != agent.pk:
        return None
    if conversation is not None and kept.get("conversation") != str(conversation):
        return None
    if ticket is not None and kept.get("ticket") != ticket:
        return None
    return str(kept["text"])


def normalised(text: str) -> str:
    """Text compared for "sent unedited": line breaks and runs of spaces do not count as edits."""
    return " ".join(text.split())


def unedited(sent: str, suggested: str) -> bool:
    return normalised(sent) == normalised(suggested)


def record_chat_reply(message: Message, suggestion_id: str | None, agent: Any) -> str:
    """Mark an agent's chat reply as sent from a suggestion, unedited or edited ("" when it did
    not come from one, or the suggestion is no longer remembered)."""
    suggested = recall(suggestion_id, agent=agent, conversation=message.conversation_id)
    if suggested is None:
        if suggestion_id:
            log.info("event=suggestion_not_remembered message=%s", message.pk)
        return ""
    outcome = Message.Suggestion.UNEDITED if unedited(message.text, suggested) else Message.Suggestion.EDITED
    Message.objects.filter(pk=message.pk).update(suggestion=outcome)
    message.suggestion = outcome
    return outcome


def record_desk_send(
    ticket: Ticket, draft: Draft, suggestion_id: str | None, agent: Any
) -> TicketEvent | None:
    """An approved desk reply that started from an inserted suggestion: recorded on the ticket
    with whether it went out as suggested. (A reply sent from the model's own draft needs no
    record: the draft's versions already say whether an agent changed it; see
    assistant/insights/analytics.py.)"""
    suggested = recall(suggestion_id, agent=agent, ticket=ticket.pk)
    if suggested is None:
        return None
    return TicketEvent.objects.create(
        ticket=ticket,
        action=DESK_SUGGESTION_EVENT,
        user=agent,
        data={"draft": draft.version, "unedited": unedited(draft.body, suggested)},
    )


# --- Macros --------------------------------------------------------------------------------------


def macros_for(agent: Any) -> QuerySet[Macro]:
    """The macros an agent may insert: the shared ones and their own."""
    return Macro.objects.filter(Q(agent__isnull=True) | Q(agent=agent))


def macro_for(agent: Any, macro_id: Any) -> Macro:
    """One macro the agent may insert; another agent's own answers like a missing one."""
    if isinstance(macro_id, bool) or not isinstance(macro_id, int | str) or not str(macro_id).isdigit():
        raise DomainError("unknown_macro", "That canned reply does not exist.", 404)
    found = macros_for(agent).filter(pk=int(str(macro_id)[:18])).first()
    if found is None:
        raise DomainError("unknown_macro", "That canned reply does not exist.", 404)
    return found


@dataclass(frozen=True)
class Filled:
    text: str
    missing: tuple[str, ...]  # variables left as written: no value here, or no such variable

    @property
    def warning(self) -> str:
        if not self.missing:
            return ""
        names = ", ".join(f"{{{name}}}" for name in self.missing)
        return f"Not filled in: {names}. Replace {'it' if len(self.missing) == 1 else 'them'} before sending."

    def frame(self) -> dict[str, Any]:
        return {"text": self.text, "missing": list(self.missing), "warning": self.warning}


def fill(body: str, values: dict[str, str]) -> Filled:
    """The body with each known variable replaced by its value, in one pass (a value that itself
    looks like "{agent_name}" stays as the customer wrote it). Values are text: the console and
    the desk page insert them as text, never as HTML. A variable with no value, or one that does
    not exist, is left visible as {name}."""
    missing: list[str] = []

    def value(match: Any) -> str:
        name = match.group(1)
        given = " ".join(str(values.get(name) or "").split()) if name in VARIABLES else ""
        if not given:
            if name not in missing:
                missing.append(name)
            return str(match.group(0))
        return given

    return Filled(VARIABLE.sub(value, body), tuple(missing))


def macro_items(agent: Any, values: dict[str, str]) -> list[dict[str, Any]]:
    """Every macro the agent may insert, filled with `values`: for a page that has them all."""
    return [{"id": m.pk, "title": m.title, **fill(m.body, values).frame()} for m in macros_for(agent)]


def _agent_name(user: Any) -> str:
    """The agent as customers see them (assistant/chat/present.agent_name): full name, else username."""
    return user.get_full_name().strip() or user.get_username()


def conversation_values(conversation: Conversation, agent: Any) -> dict[str, str]:
    """What a macro's variables are filled with in a live conversation: the visitor's name and
    the ticket's reference exist once they left their address for an answer by email."""
    ticket = conversation.ticket
    return {
        "customer_name": ticket.customer_name if ticket else "",
        "ticket_reference": ticket.reference if ticket else "",
        "agent_name": _agent_name(agent),
        "site_name": conversation.site.name if conversation.site else "",
    }


def ticket_values(ticket: Ticket, agent: Any) -> dict[str, str]:
    """What a macro's variables are filled with on a desk ticket. The site's name: the site of the
    chat that became this ticket, else the only site there is."""
    conversation = Conversation.objects.select_related("site").filter(ticket=ticket).first()
    site = conversation.site if conversation else None
    if site is None:
        sites = list(Site.objects.all()[:2])
        site = sites[0] if len(sites) == 1 else None
    return {
        "customer_name": ticket.customer_name,
        "ticket_reference": ticket.reference,
        "agent_name": _agent_name(agent),
        "site_name": site.name if site else "",
    }

"""The agent copilot: a suggested reply to the customer's latest question, from the same answer
path the widget uses (replies.suggested_reply), for the live console (a `suggest` frame on
/ws/console/) and a desk ticket (POST /console/desk/<id>/suggest); the summary of the bot
conversation an agent sees when a visitor is handed over; canned replies filled for a
conversation. A suggestion goes only to the agent who asked: never to the visitor, and nothing is
stored but the id that lets the reply sent from it be counted (assistant/copilot.py).

The desk's suggestion is computed here, not in assistant/desk/: the chat's answer path lives in
this package, and chat/ may import desk/ but not the other way round.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from answers.grounding import Ask, retrieve
from answers.lookups.runner import Plan, perform, record_lookup
from answers.verification import split_sentences
from assistant import copilot
from assistant.chat import handoff
from assistant.chat.access import get_visitor_conversation
from assistant.chat.actions import _history, retrieval_query
from assistant.chat.errors import ChatError
from assistant.chat.replies import Suggested, lookup_plan, suggested_reply
from assistant.desk.drafting import customer_text, latest_question, retrieve_for
from assistant.desk.letter import letter
from assistant.models import Conversation, Message, Ticket
from core.errors import DomainError

# Finish reasons of the fixed reply after the model failed (answers/fallback.py: finish_reason).
FALLBACK_REASONS = ("stalled", "timeout", "busy", "error")
SUMMARY_QUESTIONS = 6  # the last ones, for a long bot conversation
SUMMARY_CHARS = 200  # per question and per answer sentence
DESK_QUESTION_CHARS = 2000  # of a customer's mail, to find the sentences that answer it


def label(suggested: Suggested) -> str:
    """How the suggestion is introduced to the agent: "Suggested from the knowledge base [1] Refunds"."""
    titles = " · ".join(f"[{c['n']}] {c.get('title') or '(untitled)'}" for c in suggested.citations)
    if suggested.template.startswith("pinned:"):
        return f"Suggested from a pinned answer {titles}".strip()
    if suggested.template.startswith("canned:"):
        return "Suggested: a standard reply"
    return f"Suggested from the knowledge base {titles}".strip()


def _frame(suggested: Suggested, suggestion_id: str | None) -> dict[str, Any]:
    if suggested.template == "canned:decline":
        # The widget would politely decline; an agent needs to know there is nothing to insert.
        return {
            "id": None,
            "text": "",
            "citations": [],
            "label": "",
            "verified": False,
            "sure": False,
            "note": "The knowledge base has nothing on this question: write the reply yourself.",
        }
    note = "" if suggested.sure else "The assistant is not sure this answers the question: check it first."
    return {
        "id": suggestion_id,
        "text": suggested.text,
        "citations": suggested.citations,
        "label": label(suggested),
        "verified": suggested.verified,
        "sure": suggested.sure,
        "note": note,
    }


# --- The live console ----------------------------------------------------------------------------


QUESTIONS_LOOKED_AT = 20  # the visitor's latest messages searched for their latest question


def _latest_question(conversation: Conversation) -> Message | None:
    """The visitor's latest message that asks something: "Can I talk to a person?" is skipped,
    as the agent is there to answer what came before it."""
    for message in conversation.messages.filter(role=Message.Role.USER).order_by("-id")[:QUESTIONS_LOOKED_AT]:
        if not handoff.asks_for_person(message.text):
            return message
    return None


def _prepare(conversation_id: Any, agent: Any) -> tuple[Conversation, Message, Plan | None]:
    conversation = get_visitor_conversation(conversation_id, None)  # staff: any visitor's
    if conversation.status == Conversation.Status.AGENT and conversation.agent_id != agent.pk:
        raise ChatError("not_yours", "Another agent has this conversation.")
    if conversation.status not in (Conversation.Status.QUEUED, Conversation.Status.AGENT):
        raise ChatError(
            "not_allowed", "Suggestions are for conversations waiting for a person or taken by you."
        )
    question = _latest_question(conversation)
    if question is None:
        raise ChatError("no_question", "The visitor has not asked anything yet.")
    # As the chat decides (actions._begin): a lookup in the company's systems first.
    return conversation, question, lookup_plan(conversation, question)


def _from_knowledge(conversation: Conversation, question: Message) -> Suggested:
    history = _history(conversation, question)
    # As the chat retrieves for an answer (actions._begin): the same query, knowledge base and k.
    retrieval = retrieve(
        Ask(
            retrieval_query(question.text, history),
            collection=conversation.collection,
            k=settings.CHAT_RETRIEVAL_K,
            pinned=True,
            pinned_text=question.text,
        )
    )
    return suggested_reply(question.text, retrieval, conversation.language)


def _suggestion_frame(
    conversation: Conversation, question: Message, suggested: Suggested, agent: Any
) -> dict[str, Any]:
    suggestion_id = copilot.remember(suggested.text, agent=agent, conversation=conversation.pk)
    return {
        "type": "suggestion",
        "conversation": str(conversation.pk),
        "question": str(question.pk),
        **_frame(suggested, suggestion_id),
    }


async def chat_suggestion(conversation_id: Any, agent: Any) -> dict[str, Any]:
    """The suggestion frame for the visitor's latest question in a conversation waiting for a
    person or taken by this agent: what the chat's answer path would answer it (a lookup in the
    company's systems, a pinned answer, the knowledge base), stored nowhere but as the id that
    counts the reply sent from it. A lookup is really made (with the visitor's own values and
    identity, recorded and counted against their limits, as the chat's), with this agent as the
    actor in the audit log; a missing value becomes the question to ask the visitor."""
    # Thread-sensitive (the default): the embedder's tokenizer is not made for concurrent calls
    # from several threads, so matching and retrieval run on the one sync thread, as the chat's.
    conversation, question, plan = await sync_to_async(_prepare)(conversation_id, agent)
    if plan is None:
        suggested = await sync_to_async(_from_knowledge)(conversation, question)
    elif plan.missing is not None:
        # Not recorded as asked: the visitor's answer goes to the agent, who asks for a new
        # suggestion with it.
        suggested = Suggested(plan.missing.question(), [], f"action-ask:{plan.action.pk}", False, True)
    else:
        # On a thread of its own, as the chat's: a slow system holds no one else.
        performed = await sync_to_async(perform, thread_sensitive=False)(plan, conversation.visitor)
        reply = await sync_to_async(record_lookup)(
            plan, performed, conversation=str(conversation.pk), caller="copilot", actor=agent
        )
        suggested = Suggested(reply.text, [], reply.template, reply.verified, not reply.offer_person)
    frame = await sync_to_async(_suggestion_frame)(conversation, question, suggested, agent)
    if plan is not None:
        frame["label"] = f"Suggested from a lookup: {plan.action.name}"
    return frame


@sync_to_async
def macro_frame(conversation_id: Any, macro_id: Any, agent: Any) -> dict[str, Any]:
    macro = copilot.macro_for(agent, macro_id)
    conversation = get_visitor_conversation(conversation_id, None)
    filled = copilot.fill(macro.body, copilot.conversation_values(conversation, agent))
    return {"type": "macro", "conversation": str(conversation.pk), "macro": macro.pk, **filled.frame()}


@sync_to_async
def macros_frame(agent: Any) -> dict[str, Any]:
    return {"type": "macros", "items": [{"id": m.pk, "title": m.title} for m in copilot.macros_for(agent)]}


@sync_to_async
def record_reply(message: Message, suggestion_id: str | None, agent: Any) -> str:
    return copilot.record_chat_reply(message, suggestion_id, agent)


# --- The summary at a handover -------------------------------------------------------------------


def _short(text: str, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def handover_summary(conversation: Conversation) -> dict[str, Any] | None:
    """What the visitor asked the assistant before being handed to a person, and how it went:
    each question with the first sentence of the answer, whether the answer was verified, whether
    the assistant was sure, whether it failed and whether the visitor gave it a thumbs-down.
    None when the conversation was never handed over, or the bot answered nothing.

    Built from the stored messages, not written by the model: the default 135M chat model cannot
    summarise faithfully (it invents details, as it does when asked to rewrite a follow-up
    question; see actions.retrieval_query), and an agent acting on an invented summary is worse
    off than one reading the visitor's own words."""
    if conversation.handoff_at is None:
        return None
    messages = list(conversation.messages.order_by("id").prefetch_related("feedback"))
    turns = []
    for question, answer in zip(messages, messages[1:], strict=False):
        # A question the assistant answered; words relayed to a person get no answer from it.
        if question.role != Message.Role.USER or answer.role != Message.Role.ASSISTANT:
            continue
        # A list's "1." is not a sentence worth showing: skip bare markers.
        sentences = [s for s in split_sentences(answer.text) if len(s.strip(" .)-*0123456789")) > 2]
        failed = answer.status == Message.Status.FAILED or answer.finish_reason in FALLBACK_REASONS
        turns.append(
            {
                "question": _short(question.text),
                "answer": _short(sentences[0] if sentences else answer.text),
                "verified": answer.verified,
                "sure": not answer.unanswered and not failed,
                "failed": failed,
                "thumbs_down": any(f.value == -1 for f in answer.feedback.all()),
                "sources": [c.get("title") for c in answer.citations or [] if isinstance(c, dict)],
            }
        )
    if not turns:
        return None
    unsure = sum(1 for t in turns if not t["sure"])
    negative = sum(1 for t in turns if t["thumbs_down"])
    asked = len(turns)
    headline = f"The visitor asked the assistant {asked} question{'s' if asked != 1 else ''}"
    if unsure:
        headline += f"; it was not sure of {unsure}"
    if negative:
        headline += f"; {negative} answer{'s' if negative != 1 else ''} got a thumbs-down"
    return {
        "headline": headline + ".",
        "questions": turns[-SUMMARY_QUESTIONS:],
        "asked": asked,
        "not_sure": unsure,
        "thumbs_down": negative,
    }


# --- The desk ------------------------------------------------------------------------------------


def desk_suggestion(ticket: Ticket, agent: Any) -> dict[str, Any]:
    """A suggested reply to the ticket's latest customer mail, from the chat's answer path over
    the desk's knowledge base (retrieved as a draft is: drafting.write_draft), with the letter
    around it that the agent inserts in the reply box."""
    message = latest_question(ticket)
    if message is None:
        raise DomainError("no_question", "This ticket has no customer mail to answer.", 409)
    customer = customer_text(message)[:DESK_QUESTION_CHARS]
    if not customer:
        raise DomainError("no_question", "The customer's mail has no text to answer.", 409)
    retrieval = retrieve_for(ticket, message, customer)
    suggested = suggested_reply(customer, retrieval, ticket.language or None)
    inserted = letter(ticket, message, suggested.text) if suggested.template != "canned:decline" else ""
    suggestion_id = copilot.remember(inserted, agent=agent, ticket=ticket.pk) if inserted else None
    return {"ticket": ticket.pk, "letter": inserted, **_frame(suggested, suggestion_id)}

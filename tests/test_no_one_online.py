"""Nobody from the team online: the visitor is told so, when to expect a reply, and leaves their
email address; the conversation becomes a desk ticket. With an agent online the live handoff
works as before, and visitors see the agent's display name. Real websockets through the ASGI
stack, the real database and Channels' in-memory layer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.utils import timezone

from assistant.chat import handoff, presence
from assistant.models import AgentPresence, Conversation, MailMessage, Message, Site, Ticket
from assistant.models.hours import DAYS
from tests.test_handoff import console, until, visitor

pytestmark = pytest.mark.django_db(transaction=True)

SITE_ORIGIN = (b"origin", b"https://www.brightline.example")


@pytest.fixture(autouse=True)
def _fresh_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def site(db):
    """Open two days from now only, so it is closed whenever the test runs."""
    day = DAYS[(timezone.now().weekday() + 2) % 7].capitalize()
    return Site.objects.create(
        key="brightline",
        name="Brightline",
        allowed_origins="https://www.brightline.example",
        time_zone="UTC",
        opening_hours=f"{day} 09:00-17:00",
        reply_time="within 2 hours",
    )


async def site_visitor(token: str = ""):
    query = "?site=brightline" + (f"&visitor={token}" if token else "")
    chat, token = await visitor(query, origin=SITE_ORIGIN)
    await until(chat, "config")
    return chat, token


async def ask_for_a_person(chat, text: str = "My router blinks red and the internet is gone.") -> str:
    await chat.send_json_to({"type": "message", "text": "talk to a person please"})
    conversation = (await until(chat, "conversation"))["id"]
    await until(chat, "done")
    return conversation


async def test_nobody_online_offers_email_with_the_reply_time_and_the_address_makes_one_ticket(site):
    chat, _ = await site_visitor()
    await chat.send_json_to({"type": "handoff"})
    conversation = (await until(chat, "conversation"))["id"]
    offer = await until(chat, "offline")
    day = site.opening_hours.split()[0]
    names = {
        d.capitalize(): n
        for d, n in zip(
            DAYS, ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"], strict=True
        )
    }
    assert offer["conversation"] == conversation and offer["open_now"] is False
    assert offer["back"] == f"{names[day]} at 09:00 (UTC)" and offer["reply_time"] == "within 2 hours"
    assert offer["text"] == (
        f"Nobody from our team is online right now. We're back {names[day]} at 09:00 (UTC). "
        "We usually reply within 2 hours. Leave your email address and we'll answer you there."
    )
    assert offer["ticket"] is None
    stored = await Conversation.objects.aget(pk=conversation)
    assert stored.status == Conversation.Status.BOT  # not in a queue nobody watches

    # Asked for a person before writing anything: the question comes with the address.
    await chat.send_json_to({"type": "email", "conversation": conversation, "email": "jo@example.com"})
    refused = await until(chat, "error")
    assert refused["code"] == "missing_question" and refused["for"] == "email"
    await chat.send_json_to(
        {
            "type": "email",
            "conversation": conversation,
            "email": " jo@example.com ",
            "name": "Jo  Bloggs",
            "text": "Can I move my contract to a new address?",
        }
    )
    thanks = await until(chat, "ticket")
    assert thanks["email"] == "jo@example.com" and thanks["text"] == "Thanks, we'll answer at jo@example.com."

    ticket = await Ticket.objects.aget(customer_email="jo@example.com")
    assert thanks["reference"] == ticket.reference and ticket.customer_name == "Jo Bloggs"
    assert ticket.status == Ticket.Status.NEW and "Brightline" in ticket.subject
    first = await MailMessage.objects.aget(ticket=ticket)
    assert first.direction == "in" and first.from_email == "jo@example.com"
    assert "Visitor: Can I move my contract to a new address?" in first.text
    assert "Brightline (brightline)" in first.text
    assert first.reply_text == "Can I move my contract to a new address?"
    stored = await Conversation.objects.aget(pk=conversation)
    assert stored.status == Conversation.Status.BOT and stored.ticket_id == ticket.pk

    # Again (a double click, another tab): the same ticket, not a second one.
    await chat.send_json_to({"type": "email", "conversation": conversation, "email": "other@example.com"})
    again = await until(chat, "ticket")
    assert again["reference"] == ticket.reference and again["email"] == "jo@example.com"
    assert await Ticket.objects.acount() == 1 and await MailMessage.objects.acount() == 1

    # Asking for a person once more says where the answer will come, with no new form.
    await chat.send_json_to({"type": "handoff"})
    offer = await until(chat, "offline")
    assert offer["ticket"] == {"email": "jo@example.com", "reference": ticket.reference}
    assert "We'll answer you by email at jo@example.com." in offer["text"]
    await chat.disconnect()


async def test_later_questions_go_to_the_assistant_and_the_transcript_to_the_desk(site, embedder):
    chat, token = await site_visitor()
    await chat.send_json_to({"type": "message", "text": "talk to a person please"})
    conversation = (await until(chat, "conversation"))["id"]
    assert (await until(chat, "done"))["relayed"] is True
    assert (await until(chat, "offline"))["conversation"] == conversation
    # The visitor writes on without leaving an address: the assistant answers, nothing waits.
    await chat.send_json_to({"type": "message", "text": "Hi", "conversation": conversation})
    answered = await until(chat, "done")
    assert not answered.get("relayed")
    assert (await Message.objects.aget(pk=int(answered["message"]))).role == Message.Role.ASSISTANT
    await chat.disconnect()

    # A reload: the history says nothing is queued; the address turns it into a ticket.
    again, _ = await site_visitor(token)
    await again.send_json_to({"type": "resume", "conversation": conversation})
    history = await until(again, "history")
    assert history["state"] == "bot" and history["ticket"] is None
    await again.send_json_to({"type": "email", "conversation": conversation, "email": "sam@example.org"})
    await until(again, "ticket")
    text = (await MailMessage.objects.aget(ticket__customer_email="sam@example.org")).text
    assert (
        text.index("Visitor: talk to a person please") < text.index("Visitor: Hi") < text.index("Assistant:")
    )
    ticket = await Ticket.objects.aget(customer_email="sam@example.org")
    assert ticket.subject == "Chat on Brightline: Hi"  # the request for a person is not the question
    await again.send_json_to({"type": "resume", "conversation": conversation})
    assert (await until(again, "history"))["ticket"]["email"] == "sam@example.org"
    await again.disconnect()


@pytest.mark.parametrize(
    "email, code",
    [
        ("jo@", "bad_email"),
        ("not an address", "bad_email"),
        ("jo@example.com\nBcc: all@example.com", "bad_email"),
        ("", "missing_email"),
        (42, "missing_email"),
        ("a" * 250 + "@example.com", "bad_email"),
    ],
)
async def test_a_bad_address_gets_a_clear_error_and_nothing_is_lost(site, email, code):
    chat, _ = await site_visitor()
    conversation = await ask_for_a_person(chat)
    await chat.send_json_to({"type": "email", "conversation": conversation, "email": email})
    error = await until(chat, "error")
    assert error["code"] == code and error["for"] == "email" and error["message"]
    assert await Ticket.objects.acount() == 0
    # The socket is healthy and the conversation as it was: the right address still works.
    await chat.send_json_to({"type": "email", "conversation": conversation, "email": "jo@example.com"})
    await until(chat, "ticket")
    assert await Message.objects.filter(conversation_id=conversation).acount() == 1
    await chat.disconnect()


async def test_email_frames_are_rate_limited_and_only_for_the_visitors_own_conversation(site, settings):
    settings.CHAT_EMAILS_PER_MINUTE = 2
    chat, _ = await site_visitor()
    conversation = await ask_for_a_person(chat)
    stranger, _ = await site_visitor()
    await stranger.send_json_to({"type": "email", "conversation": conversation, "email": "x@example.com"})
    assert (await until(stranger, "error"))["code"] == "unknown_conversation"
    await stranger.send_json_to({"type": "email", "email": "x@example.com"})
    assert (await until(stranger, "error"))["code"] == "unknown_conversation"
    for _ in range(2):
        await chat.send_json_to({"type": "email", "conversation": conversation, "email": "nope"})
        assert (await until(chat, "error"))["code"] == "bad_email"
    await chat.send_json_to({"type": "email", "conversation": conversation, "email": "jo@example.com"})
    limited = await until(chat, "error")
    assert limited["code"] == "rate_limited" and limited["retry_after"] and limited["for"] == "email"
    assert await Ticket.objects.acount() == 0
    for communicator in (chat, stranger):
        await communicator.disconnect()


async def test_with_an_agent_online_the_handoff_is_live_and_shows_their_display_name(site, agent):
    agent.first_name, agent.last_name, agent.email = "Maria", "Jones", "maria@brightline.example"
    await agent.asave()
    desk = await console(agent)
    await until(desk, "queue")
    assert await sync_to_async(presence.agents_online)()

    chat, _ = await site_visitor()
    await chat.send_json_to({"type": "handoff"})
    conversation = (await until(chat, "conversation"))["id"]
    assert (await until(chat, "handoff"))["state"] == "queued"
    await desk.send_json_to({"type": "claim", "conversation": conversation})
    joined = await until(chat, "handoff", state="joined")
    assert joined["agent"] == "Maria Jones" and joined["initials"] == "MJ"
    await desk.send_json_to({"type": "typing", "conversation": conversation})
    typing = await until(chat, "agent_typing")
    assert typing["agent"] == "Maria Jones" and typing["initials"] == "MJ"
    await desk.send_json_to({"type": "reply", "conversation": conversation, "text": "Hello, Maria here."})
    message = await until(chat, "agent_message")
    assert message["agent"] == "Maria Jones" and message["initials"] == "MJ"
    await chat.send_json_to({"type": "resume", "conversation": conversation})
    history = await until(chat, "history")
    assert history["agent"] == "Maria Jones" and history["messages"][-1]["initials"] == "MJ"
    for frame in (joined, typing, message, history):
        assert "alex" not in str(frame) and "maria@" not in str(frame)  # never the login or the email
    # Once claimed, the email form is not for this conversation: a person answers here.
    await chat.send_json_to({"type": "email", "conversation": conversation, "email": "jo@example.com"})
    assert (await until(chat, "error"))["code"] == "agent_joined"
    for communicator in (chat, desk):
        await communicator.disconnect()


async def test_an_agent_without_a_full_name_is_shown_by_username(agent):
    from assistant.chat.present import agent_fields

    assert agent_fields(agent) == {"agent": "alex", "initials": "A"}
    assert agent_fields(None) == {"agent": None}


async def test_when_the_last_agent_leaves_a_waiting_visitor_is_told_and_may_leave_an_address(site, agent):
    desk = await console(agent)
    await until(desk, "queue")
    chat, _ = await site_visitor()
    await chat.send_json_to({"type": "handoff"})
    conversation = (await until(chat, "conversation"))["id"]
    assert (await until(chat, "handoff"))["state"] == "queued"
    await desk.disconnect()
    assert not await sync_to_async(presence.agents_online)()

    await chat.send_json_to({"type": "message", "text": "Hello? Anyone there?"})
    assert (await until(chat, "done"))["relayed"] is True  # kept for the agent's return
    assert (await until(chat, "offline"))["conversation"] == conversation  # but not silently

    watcher = await console(agent)  # the agent is back and sees it leave the queue
    await until(watcher, "queue")
    await chat.send_json_to({"type": "email", "conversation": conversation, "email": "jo@example.com"})
    await until(chat, "ticket")
    changed = await until(watcher, "changed")
    assert changed["conversation"]["id"] == conversation and changed["conversation"]["status"] == "bot"
    stored = await Conversation.objects.aget(pk=conversation)
    assert stored.status == Conversation.Status.BOT and stored.ticket_id
    for communicator in (chat, watcher):
        await communicator.disconnect()


async def test_after_a_fallback_with_nobody_online_the_offer_comes_and_nothing_is_queued(site):
    conversation = await Conversation.objects.acreate(visitor="v-1", site=site)
    offer = await handoff.ask_for_person(conversation)
    assert offer["type"] == "offline" and offer["reply_time"] == "within 2 hours"
    assert (await Conversation.objects.aget(pk=conversation.pk)).status == Conversation.Status.BOT


def test_presence_expires_without_a_refresh_and_ends_on_disconnect(agent):
    now = timezone.now()
    presence.arrive(agent, "specific.one", now=now)
    assert presence.agents_online(now=now)
    later = now + timedelta(seconds=presence.presence_seconds() + 1)
    assert not presence.agents_online(now=later)  # the process died: no refresh came
    presence.arrive(agent, "specific.one", now=later)  # a live socket refreshes it
    assert presence.agents_online(now=later)
    assert presence.sweep(now=later + timedelta(seconds=presence.presence_seconds() + 1)) == 1
    presence.arrive(agent, "specific.two", now=now)
    presence.leave("specific.two")
    assert not presence.agents_online(now=now) and not AgentPresence.objects.exists()
    agent.is_active = False  # a deactivated account's stale socket does not count
    agent.save()
    presence.arrive(agent, "specific.three", now=now)
    assert not presence.agents_online(now=now)


async def test_the_console_socket_marks_its_agent_online_until_it_closes(agent):
    assert not await sync_to_async(presence.agents_online)()
    first, second = await console(agent), await console(agent)  # two tabs
    await until(first, "queue")
    await until(second, "queue")
    assert await AgentPresence.objects.acount() == 2
    await first.disconnect()
    assert await sync_to_async(presence.agents_online)()  # the other tab still counts
    await second.disconnect()
    assert not await sync_to_async(presence.agents_online)()

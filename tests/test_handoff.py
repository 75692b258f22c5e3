"""Handoff to a person, visitor identity, origins and limits, through the real ASGI stack (origin
checks, sessions, routing) and Channels' in-memory layer. None of these frames reaches the model."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client

from assistant.chat.visitors import issue_token
from assistant.models import Conversation, Message, Site
from config.asgi import application

# Someone is online throughout: with nobody online, visitors get email instead (test_no_one_online.py).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_online")]

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


@pytest.fixture(autouse=True)
def _fresh_limits():
    cache.clear()
    yield
    cache.clear()


async def visitor(query: str = "", origin=ORIGIN) -> tuple[WebsocketCommunicator, str]:
    communicator = WebsocketCommunicator(application, f"/ws/chat/{query}", headers=[origin])
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from(timeout=10)
    assert hello["type"] == "visitor"
    return communicator, hello["token"]


async def console(user) -> WebsocketCommunicator:
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=[ORIGIN, (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def until(communicator: WebsocketCommunicator, kind: str, **match) -> dict:
    while True:
        frame = await communicator.receive_json_from(timeout=10)
        if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
            return frame


async def test_visitor_asks_for_a_person_one_of_two_agents_wins_and_they_talk_live(agent):
    from tests.conftest import _user

    other = await sync_to_async(_user)("blake", "agent")
    alex_console, blake_console = await console(agent), await console(other)
    assert (await alex_console.receive_json_from())["type"] == "queue"
    assert (await blake_console.receive_json_from())["type"] == "queue"

    chat, _ = await visitor()
    await chat.send_json_to({"type": "handoff"})
    conversation = (await until(chat, "conversation"))["id"]
    assert (await until(chat, "handoff"))["state"] == "queued"
    changed = await until(alex_console, "changed")
    assert changed["conversation"]["id"] == conversation and changed["conversation"]["status"] == "queued"

    # Both click "take" at the same moment: exactly one wins, the other is told so.
    await asyncio.gather(
        alex_console.send_json_to({"type": "claim", "conversation": conversation}),
        blake_console.send_json_to({"type": "claim", "conversation": conversation}),
    )
    outcomes = []
    for communicator in (alex_console, blake_console):
        while True:
            frame = await communicator.receive_json_from(timeout=10)
            if frame["type"] == "error" or (
                frame["type"] == "changed" and frame["conversation"]["status"] == "agent"
            ):
                outcomes.append(frame)
                break
    errors = [f for f in outcomes if f["type"] == "error"]
    # Each console sees the winner's change; the loser also gets an error before or after it.
    stored = await sync_to_async(Conversation.objects.select_related("agent").get)(pk=conversation)
    assert stored.status == Conversation.Status.AGENT and stored.agent.username in ("alex", "blake")
    winner, loser = (
        (alex_console, blake_console) if stored.agent.username == "alex" else (blake_console, alex_console)
    )
    if not errors:
        errors = [await until(loser, "error")]
    assert errors[0]["code"] == "already_claimed"
    joined = await until(chat, "handoff")
    assert joined["state"] == "joined" and joined["agent"] == stored.agent.username

    # The agent opens it, replies; the visitor sees it live, and the visitor's answer reaches
    # the agent instead of the model.
    await winner.send_json_to({"type": "open", "conversation": conversation})
    assert (await until(winner, "history"))["state"] == "joined"
    await winner.send_json_to({"type": "reply", "conversation": conversation, "text": "Hi, I'm here."})
    message = await until(chat, "agent_message")
    assert message["text"] == "Hi, I'm here." and message["agent"] == stored.agent.username
    await chat.send_json_to({"type": "message", "text": "My router blinks red."})
    done = await until(chat, "done")
    assert done["relayed"] is True
    assert (await until(winner, "visitor_message"))["text"] == "My router blinks red."

    # The loser may not reply; the winner hands back to the bot.
    await loser.send_json_to({"type": "reply", "conversation": conversation, "text": "me too"})
    assert (await until(loser, "error"))["code"] == "not_yours"
    await winner.send_json_to({"type": "hand_back", "conversation": conversation})
    assert (await until(chat, "handoff"))["state"] == "bot"
    roles = await sync_to_async(list)(
        Message.objects.filter(conversation_id=conversation).values_list("role", flat=True)
    )
    assert roles == ["agent", "user"]
    for communicator in (chat, alex_console, blake_console):
        await communicator.disconnect()


async def test_asking_for_a_person_in_words_queues_without_the_model():
    chat, _ = await visitor()
    await chat.send_json_to({"type": "message", "text": "Can I talk to a real person please?"})
    assert (await until(chat, "done"))["relayed"] is True
    assert (await until(chat, "handoff"))["state"] == "queued"
    await chat.disconnect()


async def test_only_the_visitors_own_token_resumes_a_conversation():
    chat, token = await visitor()
    await chat.send_json_to({"type": "handoff"})
    conversation = (await until(chat, "conversation"))["id"]
    await chat.disconnect()

    # A reload: same token, the history comes back with the state.
    again, same = await visitor(f"?visitor={token}")
    assert same == token
    await again.send_json_to({"type": "resume", "conversation": conversation})
    history = await until(again, "history")
    assert history["conversation"] == conversation and history["state"] == "queued"
    await again.disconnect()

    # Someone else who learned the id: the same answer as a missing conversation.
    _, stranger_token = issue_token()
    stranger, _ = await visitor(f"?visitor={stranger_token}")
    await stranger.send_json_to({"type": "resume", "conversation": conversation})
    assert (await until(stranger, "error"))["code"] == "unknown_conversation"
    await stranger.send_json_to({"type": "message", "text": "hello", "conversation": conversation})
    assert (await until(stranger, "error"))["code"] == "unknown_conversation"
    await stranger.disconnect()

    # A tampered token is not accepted: a fresh visitor identity is issued instead.
    forged, new_token = await visitor(f"?visitor={token[:-2]}xx")
    assert new_token != token
    await forged.disconnect()


async def test_rate_limit_is_per_visitor_not_per_connection(settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 2
    first, token = await visitor()
    second, _ = await visitor(f"?visitor={token}")  # a second tab of the same visitor
    for communicator in (first, second):
        await communicator.send_json_to({"type": "message", "text": "talk to a person please"})
        await until(communicator, "done")
    await second.send_json_to({"type": "message", "text": "talk to a person please"})
    error = await until(second, "error")
    assert error["code"] == "rate_limited" and 1 <= error["retry_after"] <= 60
    # The connection is still healthy: a handoff frame (not a message) works.
    await second.send_json_to({"type": "handoff"})
    await until(second, "handoff")
    for communicator in (first, second):
        await communicator.disconnect()


async def test_the_ip_limit_holds_a_client_that_mints_new_visitors(settings):
    settings.CHAT_MESSAGES_PER_MINUTE_PER_IP = 2
    codes = []
    for _ in range(3):
        chat, _ = await visitor()  # a new visitor token each time, same address
        await chat.send_json_to({"type": "message", "text": "talk to a person please"})
        frame = await chat.receive_json_from(timeout=10)
        while frame["type"] not in ("done", "error"):
            frame = await chat.receive_json_from(timeout=10)
        codes.append(frame.get("code", frame["type"]))
        await chat.disconnect()
    assert codes == ["done", "done", "rate_limited"]


async def test_a_site_admits_its_own_origins_only_and_sends_its_look():
    await sync_to_async(Site.objects.create)(
        key="brightline",
        name="Brightline",
        allowed_origins="https://www.brightline.example\n",
        title="Brightline help",
        greeting="Hello from Brightline",
        color="#0f766e",
        language="de",
    )
    chat, _ = await visitor("?site=brightline", origin=(b"origin", b"https://www.brightline.example"))
    config = await until(chat, "config")
    assert config["title"] == "Brightline help" and config["language"] == "de"
    await chat.disconnect()

    refused = WebsocketCommunicator(
        application, "/ws/chat/?site=other", headers=[(b"origin", b"https://www.brightline.example")]
    )
    await refused.connect()
    assert (await refused.receive_json_from(timeout=10))["code"] == "origin_not_allowed"
    await refused.disconnect()


async def test_the_console_socket_is_for_agents_only(outsider):
    anonymous = WebsocketCommunicator(application, "/ws/console/", headers=[ORIGIN])
    connected, _ = await anonymous.connect()
    assert not connected
    client = Client()
    await sync_to_async(client.force_login)(outsider)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    staff_without_role = WebsocketCommunicator(
        application, "/ws/console/", headers=[ORIGIN, (b"cookie", cookie)]
    )
    connected, _ = await staff_without_role.connect()
    assert not connected


async def test_the_console_socket_refuses_other_origins(agent):
    client = Client()
    await sync_to_async(client.force_login)(agent)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    foreign = WebsocketCommunicator(
        application, "/ws/console/", headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie)]
    )
    connected, _ = await foreign.connect()
    assert not connected


async def test_bad_console_frames_get_errors_and_the_socket_stays(agent):
    communicator = await console(agent)
    await communicator.receive_json_from()
    for frame, code in (
        ("not json", "bad_json"),
        ("[1]", "bad_frame"),
        ('{"type": "claim", "conversation": 5}', "unknown_conversation"),
        ('{"type": "claim", "conversation": "00000000-0000-0000-0000-000000000000"}', "unknown_conversation"),
        ('{"type": "dance", "conversation": "x"}', "unknown_type"),
    ):
        await communicator.send_to(text_data=frame)
        assert (await until(communicator, "error"))["code"] == code
    await communicator.disconnect()


def test_console_page_needs_an_agent_login_and_carries_a_csp(client, agent, outsider):
    response = client.get("/console/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(outsider)
    assert client.get("/console/").status_code == 403
    client.force_login(agent)
    response = client.get("/console/")
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "img-src 'self' data:" in policy
    assert "frame-ancestors 'none'" in policy


async def test_a_closed_conversation_refuses_new_messages(agent):
    agent_console = await console(agent)
    await agent_console.receive_json_from()
    chat, _ = await visitor()
    await chat.send_json_to({"type": "handoff"})
    conversation = (await until(chat, "conversation"))["id"]
    await agent_console.send_json_to({"type": "claim", "conversation": conversation})
    await until(chat, "handoff", state="joined")
    await agent_console.send_json_to({"type": "close", "conversation": conversation})
    await until(chat, "handoff", state="closed")
    await chat.send_json_to({"type": "message", "text": "one more thing", "conversation": conversation})
    assert (await until(chat, "error"))["code"] == "conversation_closed"
    await chat.send_json_to({"type": "handoff"})
    assert (await until(chat, "error"))["code"] == "conversation_closed"
    for communicator in (chat, agent_console):
        await communicator.disconnect()


async def test_a_silent_socket_is_closed_after_the_idle_timeout(settings):
    settings.CHAT_IDLE_TIMEOUT = 1
    chat, _ = await visitor()
    closed = await chat.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": 4008}


def test_answers_being_written_are_capped_per_visitor_across_tabs(settings):
    from assistant.chat.errors import ChatError
    from assistant.chat.limits import GenerationSlot

    settings.CHAT_CONCURRENT_ANSWERS_PER_VISITOR = 1
    first = GenerationSlot("visitor-a", "10.0.0.1").__enter__()
    with pytest.raises(ChatError) as refused:
        GenerationSlot("visitor-a", "10.0.0.2").__enter__()  # another tab, even from elsewhere
    assert refused.value.code == "too_many_answers" and refused.value.retry_after
    GenerationSlot("visitor-b", "10.0.0.1").__exit__(None, None, None)  # releasing nothing is harmless
    first.__exit__(None, None, None)
    GenerationSlot("visitor-a", "10.0.0.2").__enter__().__exit__(None, None, None)


def test_an_agent_reply_racing_the_visitors_erasure_is_a_clear_error_not_a_crash(agent):
    """Found by the websocket fuzzer: the console looked the conversation up, the visitor erased
    it, and storing the reply failed its foreign key at commit (internal_error)."""
    from assistant.chat import handoff
    from assistant.chat.errors import ChatError

    conversation = Conversation.objects.create(visitor=issue_token()[0], status=Conversation.Status.AGENT)
    Conversation.objects.filter(pk=conversation.pk).delete()  # the erase wins the race
    with pytest.raises(ChatError) as caught:
        handoff._store(conversation, Message.Role.AGENT, "Here is how to do it.", agent)
    assert caught.value.code == "unknown_conversation"
    assert not Message.objects.filter(text="Here is how to do it.").exists()

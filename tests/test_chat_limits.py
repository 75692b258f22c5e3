"""The chat websocket's limits through the real ASGI stack: every frame type is counted per visitor
and per address, handoffs cannot pile up in the agents' queue, visitors behind one address wait in
line (told their place) instead of being turned away, and a visitor reaches only public knowledge
bases. The answers in the waiting-line tests come from the real model."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache

from assistant.chat import handoff
from assistant.models import Conversation, Site
from config.asgi import application
from tests.test_widget_render import context, site  # noqa: F401 - fixtures for the widget test

# Every test but the widget's uses the database (the widget's runs Playwright's event loop,
# under which Django refuses synchronous database calls such as the flush after the test).
needs_db = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
OFFICE = "198.51.100.20"  # one office's NAT address
ELSEWHERE = "203.0.113.9"


@pytest.fixture(autouse=True)
def _fresh_limits():
    cache.clear()
    yield
    cache.clear()


async def visitor(query: str = "", ip: str = OFFICE, origin=ORIGIN) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/chat/{query}", headers=[origin])
    communicator.scope["client"] = (ip, 50000)  # what the ASGI server puts there: the peer address
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from(timeout=10)
    assert hello["type"] == "visitor"
    communicator.token = hello["token"]
    return communicator


async def until(communicator: WebsocketCommunicator, *kinds: str, timeout: float = 10) -> dict:
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] in kinds:
            return frame


async def reply_to(communicator: WebsocketCommunicator, frame: dict) -> dict:
    """Send one frame and return the first frame of the server's reply that is not a broadcast."""
    await communicator.send_json_to(frame)
    return await communicator.receive_json_from(timeout=10)


# --- Every frame type counts ---------------------------------------------------------------------

EVERY_KIND = [
    {"type": "handoff", "conversation": None},
    {"type": "feedback", "message": "1", "value": 1},
    {"type": "resume", "conversation": "00000000-0000-4000-8000-000000000000"},
    {"type": "export"},
    {"type": "erase"},
    {"type": "message", "text": "Hello"},
    {"type": "email", "conversation": None, "email": "jo@example.com"},
    {"type": "dance"},
]


@needs_db
async def test_every_frame_type_counts_against_the_visitors_limit(settings):
    settings.CHAT_FRAMES_PER_MINUTE = 5
    chat = await visitor()
    for _ in range(5):
        assert (await reply_to(chat, {"type": "export"}))["type"] == "export"
    for frame in EVERY_KIND:
        refused = await reply_to(chat, frame)
        assert refused["type"] == "error" and refused["code"] == "rate_limited", (frame, refused)
        assert 1 <= refused["retry_after"] <= 60 and refused["message"]
    await chat.send_to(text_data="{not json")
    assert (await chat.receive_json_from(timeout=10))["code"] == "rate_limited"

    # The same visitor in a second tab shares the allowance; another visitor elsewhere does not.
    tab = await visitor(f"?visitor={chat.token}", ip=ELSEWHERE)
    assert (await reply_to(tab, {"type": "export"}))["code"] == "rate_limited"
    other = await visitor(ip=ELSEWHERE)
    assert (await reply_to(other, {"type": "export"}))["type"] == "export"
    for communicator in (chat, tab, other):
        await communicator.disconnect()


@needs_db
async def test_every_frame_type_counts_against_the_addresss_limit(settings):
    settings.CHAT_FRAMES_PER_MINUTE_PER_IP = 4
    for _ in range(4):
        chat = await visitor()  # a new visitor token each time, same address
        assert (await reply_to(chat, {"type": "export"}))["type"] == "export"
        await chat.disconnect()
    minted = await visitor()
    for frame in EVERY_KIND:
        assert (await reply_to(minted, frame))["code"] == "rate_limited", frame
    elsewhere = await visitor(ip=ELSEWHERE)
    assert (await reply_to(elsewhere, {"type": "export"}))["type"] == "export"
    for communicator in (minted, elsewhere):
        await communicator.disconnect()


# --- Handoffs cannot flood the agents' queue ------------------------------------------------------


async def queued_count() -> int:
    return await Conversation.objects.filter(status=Conversation.Status.QUEUED).acount()


@needs_db
async def test_a_flood_of_handoff_frames_queues_one_conversation_per_visitor(settings, agent):
    from tests.test_handoff import console

    settings.CHAT_QUEUED_HANDOFFS_PER_VISITOR = 1
    agents = await console(agent)
    assert (await agents.receive_json_from())["type"] == "queue"
    chat = await visitor()
    await chat.send_json_to({"type": "handoff", "conversation": None})
    conversation = (await until(chat, "conversation"))["id"]
    assert (await until(chat, "handoff"))["state"] == "queued"
    for _ in range(30):
        refused = await reply_to(chat, {"type": "handoff", "conversation": None})
        assert refused["code"] == "too_many_handoffs", refused
        assert "waiting for a person" in refused["message"]
    # Asking for a person in words does not get round it either.
    refused = await reply_to(
        chat, {"type": "message", "text": "talk to a person please", "conversation": None}
    )
    assert refused["code"] == "too_many_handoffs"
    assert await queued_count() == 1
    assert await Conversation.objects.acount() == 1  # refused before a conversation was made
    assert (await until(agents, "changed"))["conversation"]["id"] == conversation
    assert await agents.receive_nothing(timeout=0.5)  # the console heard of it once, not 31 times
    # Asking again in the conversation that is already queued is still fine (a no-op).
    await chat.send_json_to({"type": "handoff", "conversation": conversation})
    assert (await until(chat, "handoff", "error"))["type"] == "handoff"
    for communicator in (chat, agents):
        await communicator.disconnect()


@needs_db
async def test_queued_conversations_are_capped_per_address(settings, agent, agent_online):
    settings.CHAT_QUEUED_HANDOFFS_PER_IP = 3
    codes = []
    for _ in range(5):
        chat = await visitor()  # new visitor tokens from one address
        await chat.send_json_to({"type": "handoff", "conversation": None})
        frame = await until(chat, "handoff", "error")
        codes.append(frame.get("code", frame["type"]))
        if frame["type"] == "error":
            assert "waiting for a person" in frame["message"] and frame["retry_after"]
        await chat.disconnect()
    assert codes == ["handoff", "handoff", "handoff", "too_many_handoffs", "too_many_handoffs"]
    assert await queued_count() == 3

    elsewhere = await visitor(ip=ELSEWHERE)
    await elsewhere.send_json_to({"type": "handoff", "conversation": None})
    assert (await until(elsewhere, "handoff", "error"))["type"] == "handoff"
    await elsewhere.disconnect()

    # Once an agent takes one of the office's conversations, the office may queue another.
    first = (
        await Conversation.objects.filter(status=Conversation.Status.QUEUED).order_by("handoff_at").afirst()
    )
    await handoff.claim(first.pk, agent)
    again = await visitor()
    await again.send_json_to({"type": "handoff", "conversation": None})
    assert (await until(again, "handoff", "error"))["type"] == "handoff"
    await again.disconnect()


# --- Knowledge bases a visitor may use ------------------------------------------------------------


async def conversation_collection(chat: WebsocketCommunicator) -> str:
    await chat.send_json_to({"type": "handoff", "conversation": None})
    frame = await until(chat, "conversation", "error")
    assert frame["type"] == "conversation", frame
    return (await Conversation.objects.aget(pk=frame["id"])).collection


@needs_db
@pytest.mark.parametrize("query", ["?collection=hr-private", "?collection=internal&site="])
async def test_a_visitor_cannot_name_a_collection_that_is_not_public(query):
    chat = await visitor(query)
    for frame in ({"type": "message", "text": "What is the CEO's salary?"}, {"type": "handoff"}):
        refused = await reply_to(chat, frame)
        assert refused["type"] == "error" and refused["code"] == "unknown_collection", refused
    assert await Conversation.objects.acount() == 0
    await chat.disconnect()


@needs_db
async def test_the_widgets_default_and_listed_public_collections_are_allowed(settings):
    settings.WIDGET_PUBLIC_COLLECTIONS = ["default", "faq"]
    for query, expected in (("", "default"), ("?collection=default", "default"), ("?collection=faq", "faq")):
        chat = await visitor(query)
        assert await conversation_collection(chat) == expected
        await chat.disconnect()


@needs_db
async def test_a_sites_visitors_get_the_sites_own_collection_only():
    await sync_to_async(Site.objects.create)(
        key="brightline",
        name="Brightline",
        allowed_origins="https://www.brightline.example",
        collection="bright",
    )
    origin = (b"origin", b"https://www.brightline.example")
    # The widget always sends its data-collection (default "default"): the site's own one is used.
    for query in (
        "?site=brightline",
        "?site=brightline&collection=default",
        "?site=brightline&collection=bright",
    ):
        chat = await visitor(query, origin=origin)
        assert await conversation_collection(chat) == "bright", query
        await chat.disconnect()
    chat = await visitor("?site=brightline&collection=hr-private", origin=origin)
    await until(chat, "config")
    assert (await reply_to(chat, {"type": "handoff"}))["code"] == "unknown_collection"
    await chat.disconnect()


# --- Visitors behind one address wait in line --------------------------------------------------


@needs_db
@pytest.mark.slow
async def test_twelve_visitors_behind_one_nat_are_queued_with_their_place_and_all_answered(
    settings, demo_kb, text_generator
):
    """Twelve colleagues behind one office NAT ask at once while four answers for the office are
    already being written (those four slots are taken directly, so that every one of the twelve
    meets a full house whatever the machine's speed). Each is told their place, and all twelve get
    a real answer from the model, four at a time."""
    from assistant.chat.limits import GenerationSlot

    settings.CHAT_CONCURRENT_ANSWERS_PER_IP = 4
    # Twelve answers on a small CPU: short ones, from one retrieved passage each.
    settings.CHAT_MAX_ANSWER_TOKENS = 8
    settings.CHAT_RETRIEVAL_K = 1
    busy = [GenerationSlot(f"colleague-{n}", OFFICE).__enter__() for n in range(4)]
    office = [await visitor() for _ in range(12)]
    try:
        for chat in office:
            await chat.send_json_to({"type": "message", "text": "How do I reset my router?"})
        places = [await until(chat, "queued", "error") for chat in office]
    finally:
        for slot in busy:
            slot.__exit__(None, None, None)
    assert sorted(p.get("position", 0) for p in places) == list(range(1, 13)), places  # one place each
    assert all(isinstance(p["wait_seconds"], int) and p["wait_seconds"] >= 1 for p in places)
    by_place = sorted(places, key=lambda p: p["position"])
    assert by_place[-1]["wait_seconds"] > by_place[0]["wait_seconds"]  # further back, longer wait

    async def rest(chat: WebsocketCommunicator) -> list[dict]:
        frames = [await chat.receive_json_from(timeout=240)]
        while frames[-1]["type"] not in ("done", "error"):
            frames.append(await chat.receive_json_from(timeout=240))
        return frames

    results = await asyncio.gather(*(rest(chat) for chat in office))
    ends = [frames[-1] for frames in results]
    assert [end["type"] for end in ends] == ["done"] * 12, [e for e in ends if e["type"] == "error"]
    for frames in results:
        positions = [f["position"] for f in frames if f["type"] == "queued"]
        assert positions == sorted(positions, reverse=True)  # a place only ever moves forward
        kinds = [f["type"] for f in frames if f["type"] != "queued"]  # and the answer comes whole
        assert kinds[0] == "conversation" and "token" in kinds and kinds[-2:] == ["citations", "done"]
    for chat in office:
        await chat.disconnect()


@needs_db
@pytest.mark.slow
async def test_past_the_line_limit_or_the_wait_limit_the_refusal_says_why(settings, demo_kb, text_generator):
    """A colleague's answer holds the office's one slot (taken directly: a real answer would be
    over before the others arrive); then one visitor waits in line, the next is refused because
    the line is full, and the one in line gets its real answer once the slot is free."""
    from assistant.chat.limits import GenerationSlot

    settings.CHAT_CONCURRENT_ANSWERS_PER_IP = 1
    settings.CHAT_QUEUED_ANSWERS_PER_IP = 1
    colleague = GenerationSlot("colleague", OFFICE).__enter__()
    try:
        waiting, third = await visitor(), await visitor()
        await waiting.send_json_to({"type": "message", "text": "What plans do you offer?"})
        place = await until(waiting, "queued", "error")
        assert place == {"type": "queued", "position": 1, "wait_seconds": place["wait_seconds"]}
        assert place["wait_seconds"] >= 1
        refused = await reply_to(third, {"type": "message", "text": "What are your opening hours?"})
        assert refused["type"] == "error" and refused["code"] == "queue_full", refused
        assert "already waiting" in refused["message"] and refused["retry_after"] >= 1
    finally:
        colleague.__exit__(None, None, None)
    frames = [await until(waiting, "conversation", "error", timeout=30)]
    while frames[-1]["type"] not in ("done", "error"):
        frames.append(await waiting.receive_json_from(timeout=240))
    assert frames[0]["type"] == "conversation" and frames[-1]["type"] == "done", frames
    assert any(f["type"] == "token" for f in frames)

    # A wait past CHAT_QUEUE_TIMEOUT_SECONDS ends with a clear refusal, not an endless wait.
    settings.CHAT_QUEUE_TIMEOUT_SECONDS = 0.5
    colleague = GenerationSlot("colleague", OFFICE).__enter__()
    try:
        await third.send_json_to({"type": "message", "text": "How long does a refund take?"})
        assert (await until(third, "queued"))["position"] == 1
        ended = await until(third, "error", "done", timeout=30)
        assert ended["type"] == "error" and ended["code"] == "queue_timeout", ended
        assert ended["retry_after"] >= 1 and "still busy" in ended["message"]
    finally:
        colleague.__exit__(None, None, None)
    for communicator in (waiting, third):
        await communicator.disconnect()


@needs_db
async def test_a_visitors_second_tab_is_told_its_answer_is_being_written_elsewhere():
    """The per-visitor cap (one answer at a time, across tabs) is a real limit: refused at once,
    with a message that says why. The other tab's slot is taken directly (no model needed: this
    test is about the refusal)."""
    from assistant.chat.limits import GenerationSlot
    from assistant.chat.visitors import read_token

    chat = await visitor()
    slot = GenerationSlot(read_token(chat.token), ELSEWHERE).__enter__()  # the same visitor's other tab
    try:
        refused = await reply_to(chat, {"type": "message", "text": "What plans do you offer?"})
        assert refused["code"] == "too_many_answers" and "another" in refused["message"], refused
    finally:
        slot.__exit__(None, None, None)
    await chat.disconnect()


# --- The widget shows the place in line -------------------------------------------------------------


@pytest.mark.browser
def test_the_widget_shows_the_place_in_line_as_text_and_clears_it_when_the_answer_starts(site, context):  # noqa: F811
    """The widget in headless Chromium with the fake socket of tests/test_widget_render.py (a test
    double for the server: this is about what the widget draws)."""
    from tests.test_widget_render import SHADOW, ask, open_widget, push

    page = context.new_page()
    page.goto(site.page("line"))
    open_widget(page)
    ask(page, "How do I reset my router?")
    push(page, {"type": "queued", "position": 3, "wait_seconds": 12})
    status = page.locator(".parley-status")
    status.wait_for()
    assert "number 3 in line" in status.inner_text() and "12 s" in status.inner_text()
    push(page, {"type": "queued", "position": "<b>1</b>", "wait_seconds": "<i>x</i>"})  # not numbers
    page.wait_for_function(f"!{SHADOW}.querySelector('.parley-status').textContent.includes('in line')")
    assert page.locator(".parley-status b, .parley-status i").count() == 0
    push(page, {"type": "queued", "position": 1, "wait_seconds": 4})
    assert "number 1 in line" in status.inner_text()
    push(page, {"type": "conversation", "id": "c-1"})
    push(page, {"type": "token", "text": "Hold the reset button."})
    page.wait_for_function(f"!{SHADOW}.querySelector('.parley-status').textContent.includes('in line')")
    assert page.locator(".parley-status").is_hidden()

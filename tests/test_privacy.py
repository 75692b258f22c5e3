"""Visitors' personal data: export and erasure over the chat socket and the API, and the
retention purge. Erasure is checked where text could remain: the database and the search index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.utils import timezone

from assistant.chat.privacy import purge_expired
from assistant.models import Conversation, Feedback, Message
from config.asgi import application
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "My account number is 4471-PRIVATE and I live at 9 Elm Road"


async def _visitor_with_a_conversation() -> tuple[WebsocketCommunicator, str, str]:
    chat = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://127.0.0.1:8000")])
    assert (await chat.connect())[0]
    token = (await chat.receive_json_from(timeout=10))["token"]
    await chat.send_json_to({"type": "handoff"})
    conversation = (await chat.receive_json_from(timeout=10))["id"]
    await chat.send_json_to({"type": "message", "text": SECRET, "conversation": conversation})
    frame = await chat.receive_json_from(timeout=10)
    while frame["type"] != "done":
        frame = await chat.receive_json_from(timeout=10)
    return chat, token, conversation


async def test_a_visitor_exports_then_erases_everything_they_said(demo_kb):
    from retrieval.search import search

    chat, _, conversation = await _visitor_with_a_conversation()
    await chat.send_json_to({"type": "export"})
    frame = await chat.receive_json_from(timeout=10)
    while frame["type"] != "export":
        frame = await chat.receive_json_from(timeout=10)
    said = [m["text"] for c in frame["data"]["conversations"] for m in c["messages"]]
    assert SECRET in said

    await chat.send_json_to({"type": "erase"})
    frame = await chat.receive_json_from(timeout=10)
    while frame["type"] != "erased":
        frame = await chat.receive_json_from(timeout=10)
    assert frame["conversations"] == 1
    assert not await Conversation.objects.filter(pk=conversation).aexists()
    assert not await Message.objects.filter(text__contains="4471-PRIVATE").aexists()
    hits = await sync_to_async(search)("account number 4471-PRIVATE Elm Road", k=10)
    assert all("4471" not in hit.text for hit in hits)
    # The socket still works, and the conversation id is gone for good.
    await chat.send_json_to({"type": "resume", "conversation": conversation})
    assert (await chat.receive_json_from(timeout=10))["code"] == "unknown_conversation"
    await chat.disconnect()


def test_staff_export_and_erase_a_visitor_through_the_api(agent, outsider, client):
    conversation = Conversation.objects.create(visitor="4d7f3b0e-visitor")
    Message.objects.create(conversation=conversation, role="user", text=SECRET)
    visitor, headers = conversation.visitor, bearer(agent)
    response = client.get(f"/api/visitors/{visitor}/export", **headers)
    assert response.status_code == 200
    assert SECRET in str(response.json())
    response = client.get(f"/api/visitors/{visitor}/export", **bearer(outsider))
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert client.get(f"/api/visitors/{visitor}/export").status_code == 401
    detail = client.get(f"/api/conversations/{conversation.pk}", **headers)
    assert detail.status_code == 200 and detail.json()["messages"][0]["text"] == SECRET
    assert client.delete(f"/api/visitors/{visitor}", **headers).status_code == 204
    assert client.delete(f"/api/visitors/{visitor}", **headers).status_code == 404
    assert client.get(f"/api/conversations/{conversation.pk}", **headers).status_code == 404
    assert client.get("/api/conversations/not-a-uuid", **headers).status_code == 404


def test_conversations_past_the_retention_period_are_purged(settings):
    settings.CHAT_RETENTION_DAYS = 30
    old = Conversation.objects.create(visitor="v-old")
    message = Message.objects.create(conversation=old, role="assistant", text="old answer")
    Feedback.objects.create(message=message, value=1)
    recent = Conversation.objects.create(visitor="v-new")
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=31))
    assert purge_expired() == 1
    assert list(Conversation.objects.values_list("visitor", flat=True)) == [recent.visitor]
    assert not Feedback.objects.exists() and not Message.objects.filter(text="old answer").exists()
    call_command("purge_conversations")  # the command the schedule also runs: nothing left to do
    assert Conversation.objects.count() == 1

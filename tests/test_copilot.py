"""The agent copilot (issue 20): a suggested reply from the widget's own answer path, over the real
console websocket and the desk page's endpoint; the summary of the bot conversation at a handover;
canned replies (macros) that admins manage and agents insert; and how often suggestions are sent
unedited. Real models, the real ASGI stack and Channels' in-memory layer; tickets for the desk
are made with the ORM (the desk's model draft is not what is under test)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from assistant import copilot
from assistant.chat.copilot import handover_summary
from assistant.insights.analytics import suggestions_sent
from assistant.models import (
    Conversation,
    Draft,
    Feedback,
    MailMessage,
    Message,
    OutboundMail,
    Ticket,
    TicketEvent,
)
from assistant.models.macros import Macro
from retrieval.models import Document
from tests.conftest import _user, bearer
from tests.test_handoff import console, until, visitor

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
QUESTION = "How do I factory reset my router?"


@pytest.fixture(autouse=True)
def _fresh_limits():
    cache.clear()
    yield
    cache.clear()


async def _queued_conversation(chat, question: str | None = QUESTION) -> str:
    """The visitor asks the assistant `question` (answered from the knowledge base), then asks
    for a person: the conversation is queued for the agents."""
    if question is not None:
        await chat.send_json_to({"type": "message", "text": question})
        conversation = (await until(chat, "conversation"))["id"]
        await until(chat, "done")
        await chat.send_json_to({"type": "handoff", "conversation": conversation})
    else:
        await chat.send_json_to({"type": "handoff"})
        conversation = (await until(chat, "conversation"))["id"]
    assert (await until(chat, "handoff"))["state"] == "queued"
    return conversation


# --- The live console ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_suggestion_is_the_widgets_verified_answer_for_the_agent_only_and_its_send_is_measured(
    demo_kb, agent
):
    agents = await console(agent)  # the agent is online: the visitor is queued for them
    await until(agents, "queue")
    chat, _ = await visitor()
    conversation = await _queued_conversation(chat)

    # Opening it shows the summary of what the visitor asked the assistant.
    await agents.send_json_to({"type": "open", "conversation": conversation})
    history = await until(agents, "history")
    summary = history["summary"]
    assert summary["asked"] == 1 and summary["questions"][0]["question"] == QUESTION
    assert summary["questions"][0]["verified"] is True and summary["questions"][0]["sure"] is True

    await agents.send_json_to({"type": "claim", "conversation": conversation})
    await agents.send_json_to({"type": "suggest", "conversation": conversation})
    suggestion = await until(agents, "suggestion")
    reset = await Document.objects.aget(source__endswith="router-reset.md")
    assert suggestion["conversation"] == conversation and suggestion["id"]
    assert suggestion["verified"] is True and suggestion["sure"] is True
    assert suggestion["citations"][0]["title"] == reset.title and "[1]" in suggestion["text"]
    assert suggestion["label"].startswith(f"Suggested from the knowledge base [1] {reset.title}")
    # The same words the widget gave the visitor for the same question: the same answer path.
    answer = await Message.objects.filter(conversation_id=conversation, role="assistant").alast()
    assert suggestion["text"] == answer.text

    # Sent as suggested (line breaks and spaces aside): counted unedited. The visitor got the
    # reply, and no suggestion before it.
    await agents.send_json_to(
        {
            "type": "reply",
            "conversation": conversation,
            "text": "  " + suggestion["text"].replace(" ", "\n", 1),
            "suggestion": suggestion["id"],
        }
    )
    frames = []
    while not frames or frames[-1]["type"] != "agent_message":
        frames.append(await chat.receive_json_from(timeout=10))
    assert [f["type"] for f in frames if f["type"] not in ("handoff",)] == ["agent_message"]

    await agents.send_json_to({"type": "suggest", "conversation": conversation})
    second = await until(agents, "suggestion")
    await agents.send_json_to(
        {
            "type": "reply",
            "conversation": conversation,
            "text": "Hi! " + second["text"],
            "suggestion": second["id"],
        }
    )
    await until(chat, "agent_message")
    # A made-up id: the reply is sent, and not counted as a suggestion.
    await agents.send_json_to(
        {"type": "reply", "conversation": conversation, "text": "Anything else?", "suggestion": "made-up"}
    )
    await until(chat, "agent_message")
    # Not an id at all: refused before anything is sent.
    await agents.send_json_to({"type": "reply", "conversation": conversation, "text": "x", "suggestion": [1]})
    assert (await until(agents, "error"))["code"] == "bad_suggestion"

    sent = await sync_to_async(list)(
        Message.objects.filter(conversation_id=conversation, role="agent").values_list(
            "suggestion", flat=True
        )
    )
    assert sent == ["unedited", "edited", ""]
    stats = await sync_to_async(suggestions_sent)(30)
    assert stats["chat"] == {"unedited": 1, "total": 2, "rate": 0.5}
    for communicator in (chat, agents):
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_suggestions_follow_the_console_rules_roles_holder_state_and_rate(agent, settings):
    other = await sync_to_async(_user)("blake", "agent")
    outsider = await sync_to_async(_user)("olive")
    mine, theirs = await console(agent), await console(other)
    for communicator in (mine, theirs):
        await until(communicator, "queue")

    # Someone without the agent role never gets a console socket to ask on.
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    client = Client()
    await sync_to_async(client.force_login)(outsider)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    refused = WebsocketCommunicator(
        application, "/ws/console/", headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie)]
    )
    connected, code = await refused.connect()
    assert not connected and code == 4001

    chat, _ = await visitor()
    conversation = await _queued_conversation(chat, question=None)  # asked for a person at once
    await mine.send_json_to({"type": "suggest", "conversation": conversation})
    assert (await until(mine, "error"))["code"] == "no_question"
    await theirs.send_json_to({"type": "claim", "conversation": conversation})
    while (await until(mine, "changed"))["conversation"]["status"] != "agent":
        pass
    await mine.send_json_to({"type": "suggest", "conversation": conversation})
    assert (await until(mine, "error"))["code"] == "not_yours"
    await mine.send_json_to({"type": "suggest", "conversation": "not-a-conversation"})
    assert (await until(mine, "error"))["code"] == "unknown_conversation"
    bot = await Conversation.objects.acreate(visitor="v")  # the assistant's: nothing for a person
    await mine.send_json_to({"type": "suggest", "conversation": str(bot.pk)})
    assert (await until(mine, "error"))["code"] == "not_allowed"

    # Suggestions count against the agent's console allowance like every other frame.
    settings.CHAT_CONSOLE_FRAMES_PER_MINUTE = 2
    cache.clear()
    codes = []
    for _ in range(5):  # two per minute: at most four get through, even across a minute's turn
        await mine.send_json_to({"type": "suggest", "conversation": "not-a-conversation"})
        codes.append((await until(mine, "error"))["code"])
    assert codes[0] == "unknown_conversation" and "rate_limited" in codes
    for communicator in (chat, mine, theirs):
        await communicator.disconnect()


# --- The summary at a handover ---------------------------------------------------------------------


def test_the_handover_summary_is_the_visitors_questions_the_answers_first_sentences_and_flags(db):
    conversation = Conversation.objects.create(visitor="v")
    talk = [
        ("user", "How do I reset my router?"),
        ("assistant", "Hold the button for ten seconds [1]. The lights then blink.", {"verified": True}),
        ("user", "Do you sell pet food?"),
        ("assistant", "I'm not sure our documents answer that.", {"unanswered": True}),
        ("user", "I want to talk to a person"),  # relayed to the agents: not asked of the assistant
    ]
    answers = []
    for role, text, *fields in talk:
        message = Message.objects.create(
            conversation=conversation, role=role, text=text, **(fields or [{}])[0]
        )
        if role == "assistant":
            answers.append(message)
    Feedback.objects.create(message=answers[1], value=-1)
    assert handover_summary(conversation) is None  # never handed over
    Conversation.objects.filter(pk=conversation.pk).update(handoff_at=timezone.now())
    conversation.refresh_from_db()
    summary = handover_summary(conversation)
    assert summary["headline"] == (
        "The visitor asked the assistant 2 questions; it was not sure of 1; 1 answer got a thumbs-down."
    )
    first, second = summary["questions"]
    assert first == {
        "question": "How do I reset my router?",
        "answer": "Hold the button for ten seconds [1].",
        "verified": True,
        "sure": True,
        "failed": False,
        "thumbs_down": False,
        "sources": [],
    }
    assert second["sure"] is False and second["thumbs_down"] is True and second["verified"] is False


# --- The desk ----------------------------------------------------------------------------------------


def _ticket(body: str = QUESTION, name: str = "Ana Example") -> Ticket:
    ticket = Ticket.objects.create(
        subject="Router",
        customer_email="ana@example.com",
        customer_name=name,
        status=Ticket.Status.NEEDS_REVIEW,
    )
    MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id=f"<{ticket.reference}@example.com>",
        from_email="ana@example.com",
        from_name=name,
        subject="Router",
        text=body,
        reply_text=body,
    )
    return ticket


def test_the_desk_suggestion_is_for_agents_with_csrf_and_its_approval_is_measured(demo_kb, agent, outsider):
    ticket = _ticket()
    url = reverse("desk-suggest", args=[ticket.pk])
    assert Client().post(url)["Location"].startswith(reverse("signin"))
    nobody = Client()
    nobody.force_login(outsider)
    assert nobody.post(url).status_code == 403

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(agent)
    page = browser.get(reverse("desk-ticket", args=[ticket.pk]))
    assert page.status_code == 200 and b"Suggest a reply" in page.content
    assert browser.post(url).status_code == 403  # no CSRF token
    token = browser.cookies["csrftoken"].value
    response = browser.post(url, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content
    data = response.json()
    reset = Document.objects.get(source__endswith="router-reset.md")
    assert data["verified"] is True and data["citations"][0]["title"] == reset.title
    assert data["letter"].startswith("Hello Ana,") and data["text"] in data["letter"]
    assert not Draft.objects.filter(ticket=ticket).exists()  # nothing is stored or sent by itself

    # Inserted and approved as it was: recorded on the ticket as sent unedited.
    approved = browser.post(
        reverse("desk-approve", args=[ticket.pk]),
        {"body": data["letter"], "version": "0", "suggestion": data["id"], "csrfmiddlewaretoken": token},
    )
    assert approved.status_code == 302
    event = TicketEvent.objects.get(ticket=ticket, action=copilot.DESK_SUGGESTION_EVENT)
    assert event.data == {"draft": 1, "unedited": True}
    assert suggestions_sent(30)["desk"] == {"unedited": 1, "total": 1, "rate": 1.0}

    missing = browser.post(reverse("desk-suggest", args=[999999]), HTTP_X_CSRFTOKEN=token)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_model_drafts_sent_as_written_count_as_unedited_on_the_desk(db, agent):
    """The desk's own suggestion is the model's draft: its versions say whether an agent changed it."""
    for body, edited in (("Restart it [1].", None), ("Restart it [1].", "Restart it now [1].")):
        ticket = _ticket()
        question = ticket.messages.get()
        model = Draft.objects.create(ticket=ticket, version=1, body=body, replying_to=question)
        sent = model
        if edited:
            sent = Draft.objects.create(
                ticket=ticket, version=2, body=edited, author=agent, replying_to=question
            )
        OutboundMail.objects.create(
            ticket=ticket,
            draft=sent,
            message_id=f"<{ticket.pk}@x>",
            from_email="a@x",
            to="b@x",
            subject="s",
            text="t",
        )
    # An agent's reply with no draft to start from is not a suggestion.
    bare = _ticket()
    own = Draft.objects.create(
        ticket=bare, version=1, body="Mine.", author=agent, replying_to=bare.messages.get()
    )
    OutboundMail.objects.create(
        ticket=bare, draft=own, message_id="<own@x>", from_email="a@x", to="b@x", subject="s", text="t"
    )
    assert suggestions_sent(30)["desk"] == {"unedited": 1, "total": 2, "rate": 0.5}


def test_the_analytics_page_says_how_many_suggestions_went_out_unedited(db, agent):
    conversation = Conversation.objects.create(visitor="v")
    for outcome in ("unedited", "unedited", "edited", ""):
        Message.objects.create(
            conversation=conversation, role="agent", text="x", author=agent, suggestion=outcome
        )
    client = Client()
    client.force_login(agent)
    page = client.get(reverse("console-analytics")).content.decode()
    assert "Suggestions sent unedited: 2 of 3 (67 %)" in " ".join(page.split())


# --- Macros ------------------------------------------------------------------------------------------


def test_macros_are_managed_by_admins_only(client, administrator, agent):
    headers = bearer(administrator)
    assert client.get("/api/macros").status_code == 401
    assert client.get("/api/macros", **bearer(agent)).json()["error"]["code"] == "forbidden"
    created = client.post(
        "/api/macros",
        {"title": "Thanks", "body": "Thanks {customer_name}, {agent_name} here. {order_no}"},
        content_type="application/json",
        **headers,
    )
    assert created.status_code == 201, created.content
    macro = created.json()
    assert macro["shared"] is True and macro["unknown_variables"] == ["order_no"] and macro["warning"]
    for bad in (
        {"title": " ", "body": "x"},
        {"title": "t", "body": "  "},
        {"title": "t", "body": "x", "agent": "nobody"},
    ):
        refused = client.post("/api/macros", bad, content_type="application/json", **headers)
        assert refused.status_code == 400 and refused.json()["error"]["message"]
    assert client.post("/api/macros", "[", content_type="application/json", **headers).status_code in (
        400,
        422,
    )
    changed = client.patch(
        f"/api/macros/{macro['id']}", {"agent": agent.username}, content_type="application/json", **headers
    )
    assert changed.json()["agent"] == agent.username and changed.json()["title"] == "Thanks"
    assert (
        client.patch(
            f"/api/macros/{macro['id']}", {"title": "x"}, content_type="application/json", **bearer(agent)
        ).status_code
        == 403
    )
    assert [m["title"] for m in client.get("/api/macros", **headers).json()["items"]] == ["Thanks"]
    assert client.delete(f"/api/macros/{macro['id']}", **headers).status_code == 204
    assert client.get(f"/api/macros/{macro['id']}", **headers).status_code == 404
    assert not Macro.objects.exists()

    # The Django admin too: admins see canned replies there, agents do not.
    admin_site = Client()
    admin_site.force_login(administrator)
    assert admin_site.get("/admin/assistant/macro/").status_code == 200
    admin_site.force_login(agent)
    assert admin_site.get("/admin/assistant/macro/").status_code == 403

    session = Client(enforce_csrf_checks=True)
    session.force_login(administrator)
    assert (
        session.post("/api/macros", {"title": "t", "body": "b"}, content_type="application/json").status_code
        == 403
    )


def test_macro_variables_are_filled_as_text_and_unknown_ones_stay_visible(db, agent):
    hostile = f"{HOSTILE} {{agent_name}}"
    ticket = _ticket(name=hostile)
    Macro.objects.create(
        title="Hello", body="Hi {customer_name}, I'm {agent_name} on {ticket_reference}. {nope}"
    )
    other = _user("blake", "agent")
    Macro.objects.create(title="Blake's own", body="Mine", agent=other)
    items = copilot.macro_items(agent, copilot.ticket_values(ticket, agent))
    assert [m["title"] for m in items] == ["Hello"]  # another agent's own macro is not offered
    filled = items[0]
    # One pass: the customer's "{agent_name}" stays their words; the agent's own name fills ours.
    assert filled["text"] == f"Hi {HOSTILE} {{agent_name}}, I'm alex on {ticket.reference}. {{nope}}"
    assert filled["missing"] == ["nope"] and "{nope}" in filled["warning"]

    client = Client()
    client.force_login(agent)
    page = client.get(reverse("desk-ticket", args=[ticket.pk])).content.decode()
    assert ESCAPED in page and HOSTILE not in page


@pytest.mark.django_db(transaction=True)
async def test_agents_insert_macros_in_the_console_filled_for_the_conversation(agent):
    site = await sync_to_async(_site)()
    shared = await Macro.objects.acreate(
        title="Welcome", body="Welcome to {site_name}, I'm {agent_name}. {customer_name}"
    )
    other = await sync_to_async(_user)("blake", "agent")
    private = await Macro.objects.acreate(title="Blake's", body="b", agent=other)
    conversation = await Conversation.objects.acreate(
        visitor="v", site=site, status=Conversation.Status.QUEUED
    )
    agents = await console(agent)
    await until(agents, "queue")
    await agents.send_json_to({"type": "macros"})
    assert (await until(agents, "macros"))["items"] == [{"id": shared.pk, "title": "Welcome"}]
    await agents.send_json_to({"type": "macro", "conversation": str(conversation.pk), "macro": shared.pk})
    frame = await until(agents, "macro")
    assert frame["text"] == "Welcome to Brightline, I'm alex. {customer_name}"
    assert frame["missing"] == ["customer_name"] and frame["warning"]
    for bad in (private.pk, "1; drop", None, 10**30):
        await agents.send_json_to({"type": "macro", "conversation": str(conversation.pk), "macro": bad})
        assert (await until(agents, "error"))["code"] == "unknown_macro"
    await agents.disconnect()


def _site():
    from assistant.models import Site

    return Site.objects.create(key="brightline", name="Brightline")


# --- In Chromium -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_in_the_console_an_agent_sees_the_summary_inserts_the_suggestion_and_sends_it(live_parley, browser):
    from tests.conftest import sign_in
    from tests.test_browser import _shell

    _shell(
        live_parley,
        "from django.contrib.auth.models import Group, User;"
        "u = User.objects.create_user('cora', password='correct horse battery staple', is_staff=True);"
        " u.groups.add(Group.objects.get_or_create(name='agent')[0])",
    )
    agent = browser.new_context().new_page()
    sign_in(agent, live_parley.url, "cora", "/console/")
    agent.locator("#connection").filter(has_text="Online").wait_for(timeout=15_000)

    visitor = browser.new_context().new_page()
    visitor.goto(live_parley.url + "/")
    visitor.locator(".parley-launcher").click()
    visitor.locator(".parley-input").fill(QUESTION)
    visitor.locator(".parley-input").press("Enter")
    visitor.locator(".parley-source").first.wait_for(timeout=180_000)
    visitor.locator(".parley-handoff").click()  # "Talk to a person"

    agent.locator(".queue-item", has_text=QUESTION).first.click()
    summary = agent.locator(".handover")
    summary.wait_for(timeout=15_000)
    assert QUESTION in summary.inner_text() and "verified" in summary.inner_text()
    agent.locator("#claim:not([disabled])").click()
    agent.locator("#suggest:not([disabled])").click()
    suggested = agent.locator("#suggestion-text")
    suggested.wait_for(timeout=60_000)
    assert "[1]" in suggested.inner_text()
    assert agent.locator("#suggestion-label").inner_text().startswith("Suggested from the knowledge base [1]")
    agent.locator("#insert:not([disabled])").click()
    assert agent.locator("#reply").input_value() == suggested.inner_text()
    agent.locator("#reply").press("Enter")

    visitor.locator(".parley-agent").filter(has_text="[1]").wait_for(timeout=15_000)
    counted = _shell(
        live_parley,
        "from assistant.models import Message;"
        "print(list(Message.objects.filter(role='agent').values_list('suggestion', flat=True)))",
    )
    assert "'unedited'" in counted  # (other browser tests on this server may add theirs)

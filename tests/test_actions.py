"""Actions (issue 20): the assistant looks things up in the company's own systems.

A real HTTP server on 127.0.0.1 (ThreadingHTTPServer) stands in for the order system: it checks
the API key, answers an order only to the customer it belongs to (the X-Customer header the
action sends, the visitor's verified identity: 403 for anyone else, 404 for no such order), and
has orders that misbehave (slow, huge, HTML, deeply nested, hostile values, a redirect to the
cloud metadata address). The chat is driven over the real websocket stack, the desk through its
own drafting with the scripted model of tests/test_desk_support.py (a test double: what the desk
does with an action's sentence is under test, not what a model writes), the admin and the API
through Django's test client.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache
from django.test import Client

from answers.lookups.http import call_http
from answers.lookups.manage import do_test_action
from answers.lookups.params import ParameterError, parse_parameters
from answers.lookups.render import TemplateError, render, validate_template
from answers.lookups.runner import Plan, run_lookup
from answers.models import Action, ActionCall
from assistant.chat.visitors import read_token
from assistant.models import Message
from core.models import AuditEvent
from tests.conftest import bearer

pytestmark = [pytest.mark.django_db(transaction=True)]

API_KEY = "s3cret-order-key"
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
ORDER = {"name": "order", "label": "your order number", "pattern": r"ZX\d{4}", "example": "ZX1234"}
REPLY = "Your order {{ order }} is {{ result.status }} and should arrive {{ result.eta }}."
NOT_FOUND = "I could not find order {{ order }}. Please check the number, or ask for a person."
HOSTILE = "{{ result.secret }} {% debug %} <script>alert(1)</script>"


class OrderSystem:
    """The company's order system, on a port of its own."""

    def __init__(self) -> None:
        self.orders: dict[str, tuple[str, dict]] = {}  # number -> (owner, order)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        system = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - the base class's signature
                pass

            def do_GET(self):  # noqa: N802 - the base class's name
                system.requests.append(("GET", self.path, dict(self.headers), b""))
                system.answer(self)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                system.requests.append(("POST", self.path, dict(self.headers), body))
                system.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        def send(status: int, body: bytes, content_type="application/json", **headers):
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)

        if handler.headers.get("X-Api-Key") != API_KEY:
            return send(401, b'{"error": "unauthorised"}')
        number = handler.path.rsplit("/", 1)[-1].split("?")[0]
        if number == "ZX9999":  # a system that hangs
            time.sleep(3)
            return send(200, b'{"status": "late"}')
        if number == "ZX7777":  # 2 MB
            return send(200, b'{"status": "' + b"x" * 2_000_000 + b'"}')
        if number == "ZX6666":
            return send(200, b"<html><body>Login</body></html>", "text/html")
        if number == "ZX5555":
            return send(200, b"[" * 60 + b"]" * 60)
        if number == "ZX4444":
            return send(200, json.dumps({"status": HOSTILE, "eta": "{{ 7*7 }}"}).encode())
        if number == "ZX3333":
            return send(302, b"", Location="http://169.254.169.254/latest/meta-data/")
        owner, order = self.orders.get(number, (None, None))
        if order is None:
            return send(404, b'{"error": "no such order"}')
        if owner != handler.headers.get("X-Customer"):
            return send(403, b'{"error": "not yours"}')
        return send(200, json.dumps(order).encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def fresh_limits():
    cache.clear()  # the rate-limit counters of earlier tests
    yield
    cache.clear()


@pytest.fixture
def order_system(settings):
    settings.ACTIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.ACTIONS_PRIVATE_HOSTS = ["127.0.0.1"]  # the local stand-in is on loopback
    settings.ACTIONS_HTTP_HOSTS = ["127.0.0.1"]  # plain http, for the local stand-in only
    system = OrderSystem()
    yield system
    system.close()


def make_action(order_system: OrderSystem, **fields) -> Action:
    defaults = {
        "name": "Order status",
        "examples": "Where is my order?\nWhat is the status of my order?\nHas my parcel shipped yet?\n"
        "When will my order arrive?",
        "parameters": [ORDER],
        "url": f"{order_system.url}/orders/{{order}}",
        "headers": {"X-Api-Key": "{secret}", "X-Customer": "{visitor}"},
        "reply_template": REPLY,
        "not_found_template": NOT_FOUND,
    }
    action = Action(**{**defaults, **fields})
    action.set_secret(API_KEY)
    action.full_clean()
    action.save()
    return action


@pytest.fixture
def order_action(order_system, embedder):
    return make_action(order_system)


def lookup(action: Action, number: str, visitor: str = "visitor-1") -> object:
    return run_lookup(Plan(action, {"order": number}, None, 1.0), visitor=visitor, caller="test")


# --- Over the chat websocket ---------------------------------------------------------------------


async def connect():
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN])
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from(timeout=10)
    return communicator, read_token(hello["token"])


async def ask(communicator, text: str, conversation=None) -> tuple[str, list[dict]]:
    await communicator.send_json_to({"type": "message", "text": text, "conversation": conversation})
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=60)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return "".join(f["text"] for f in frames if f["type"] == "token"), frames


async def test_a_visitor_asks_for_their_order_and_gets_the_systems_status_verified(
    order_system, order_action
):
    communicator, visitor = await connect()
    order_system.orders["ZX1234"] = (visitor, {"status": "shipped", "eta": "Friday"})
    text, frames = await ask(communicator, "Where is my order ZX1234?")
    assert text == "Your order ZX1234 is shipped and should arrive Friday."
    assert frames[-1]["type"] == "done" and frames[-1]["handoff"] is False
    assert frames[-2] == {"type": "citations", "items": []}
    message = await Message.objects.aget(pk=int(frames[-1]["message"]))
    call = await ActionCall.objects.aget()
    assert message.text == text and message.verified
    assert message.prompt_template == f"action:{order_action.pk}"
    assert message.retrieved == [{"action": order_action.pk, "version": 1, "action_call": call.pk}]
    assert message.support[0]["action_call"] == call.pk and message.support[0]["verdict"] == "supported"
    assert call.status == "ok" and call.http_status == 200 and call.conversation == frames[0]["id"]
    assert call.parameters == {"order": "ZX1234"} and call.latency_ms is not None
    # The system was told the key and who is asking, by the action's header templates.
    method, path, headers, _ = order_system.requests[-1]
    assert (method, path) == ("GET", "/orders/ZX1234")
    assert headers["X-Api-Key"] == API_KEY and headers["X-Customer"] == visitor
    assert await AuditEvent.objects.filter(action="action.call", data__call=call.pk).aexists()
    await communicator.disconnect()


async def test_a_missing_order_number_is_asked_for_in_one_turn_then_looked_up(order_system, order_action):
    communicator, visitor = await connect()
    order_system.orders["ZX2001"] = (visitor, {"status": "packed", "eta": "Monday"})
    text, frames = await ask(communicator, "Where is my order?")
    assert text == "What is your order number? It looks like ZX1234."
    conversation = frames[0]["id"]
    asked = await Message.objects.aget(pk=int(frames[-1]["message"]))
    assert asked.prompt_template == f"action-ask:{order_action.pk}" and not asked.verified
    assert not order_system.requests
    text, frames = await ask(communicator, "It is ZX2001", conversation)
    assert text == "Your order ZX2001 is packed and should arrive Monday."
    statuses = [c.status async for c in ActionCall.objects.order_by("id")]
    assert statuses == ["awaiting_parameter", "ok"]
    await communicator.disconnect()


async def test_an_unknown_order_gets_the_not_found_reply_and_a_person(order_system, order_action):
    communicator, _ = await connect()
    text, frames = await ask(communicator, "What is the status of my order ZX0404?")
    assert text == "I could not find order ZX0404. Please check the number, or ask for a person."
    assert frames[-1]["handoff"] is True
    call = await ActionCall.objects.aget()
    assert call.status == "not_found" and call.http_status == 404
    await communicator.disconnect()


async def test_guessing_another_customers_order_is_refused_recorded_and_limited(
    order_system, order_action, settings
):
    settings.ACTIONS_NOT_FOUND_PER_HOUR_PER_VISITOR = 2
    order_system.orders["ZX1234"] = (
        "someone-else",
        {"status": "shipped", "eta": "Friday", "address": "1 Secret Rd"},
    )
    communicator, _ = await connect()
    text, frames = await ask(communicator, "Where is my order ZX1234?")
    assert "Secret" not in text and text.startswith("I could not find order ZX1234.")
    await ask(communicator, "Where is my order ZX1235?", frames[0]["id"])
    seen = len(order_system.requests)
    text, frames = await ask(communicator, "Where is my order ZX1236?", frames[0]["id"])
    assert "please wait" in text and frames[-1]["handoff"] is True
    assert len(order_system.requests) == seen  # the third guess never reached the system
    calls = [(c.status, c.http_status) async for c in ActionCall.objects.order_by("id")]
    assert calls == [("not_found", 403), ("not_found", 404), ("refused", None)]
    assert await AuditEvent.objects.filter(action="action.call").acount() == 3
    await communicator.disconnect()


async def test_a_value_from_another_conversation_is_never_used(order_system, order_action):
    communicator, visitor = await connect()
    order_system.orders["ZX1234"] = (visitor, {"status": "shipped", "eta": "Friday"})
    await ask(communicator, "Where is my order ZX1234?")
    text, _ = await ask(communicator, "Where is my order?")  # a new conversation
    assert text == "What is your order number? It looks like ZX1234."
    await communicator.disconnect()


# --- Failures and hostile systems ------------------------------------------------------------------


def test_a_system_that_does_not_answer_in_time_is_a_timeout_with_a_person(order_system, order_action):
    order_action.timeout_seconds = 0.5
    order_action.save()
    reply = lookup(order_action, "ZX9999")
    assert reply.status == "timeout" and reply.offer_person and not reply.verified
    assert reply.text.startswith("Sorry, our system took too long")


@pytest.mark.parametrize(
    ("number", "error"),
    [
        ("ZX7777", "over the limit"),
        ("ZX6666", "not JSON"),
        ("ZX5555", "nested more than"),
    ],
)
def test_a_huge_or_hostile_answer_is_a_failed_call_said_plainly(order_system, order_action, number, error):
    reply = lookup(order_action, number)
    assert reply.status == "failed" and error in reply.call.error
    assert reply.text.startswith("Sorry, I could not look that up") and reply.offer_person


def test_template_looking_values_from_the_system_stay_text(order_system, order_action):
    reply = lookup(order_action, "ZX4444")
    assert reply.status == "ok" and reply.verified
    assert reply.text == f"Your order ZX4444 is {HOSTILE} and should arrive {{{{ 7*7 }}}}."


def test_a_key_the_system_did_not_send_renders_empty_and_says_so():
    text, missing = render("Status: {{ result.status }}. Due {{ result.eta }}.", {"status": "late"}, {})
    assert missing and text == "Status: late. Due . (Our system did not say everything this answer needs.)"


def test_addresses_outside_the_rules_are_refused_before_connecting(order_system, order_action, settings):
    settings.ACTIONS_PRIVATE_HOSTS = []  # 127.0.0.1 is loopback: refused unless allowed to be
    reply = lookup(order_action, "ZX1234")
    assert reply.status == "refused" and "loopback" in reply.call.error
    settings.ACTIONS_ALLOWED_HOSTS = []  # and a host not on the allow-list is never called
    reply = lookup(order_action, "ZX1234")
    assert reply.status == "refused" and "not on the allow-list" in reply.call.error
    metadata = call_http(
        url_template="http://169.254.169.254/latest/{order}",
        method="GET",
        headers={},
        values={"order": "ZX1"},
        secret="",
        visitor="",
        timeout=2,
    )
    assert metadata.status == "refused"  # not on ACTIONS_HTTP_HOSTS: refused before DNS or TCP
    settings.ACTIONS_HTTP_HOSTS = settings.ACTIONS_ALLOWED_HOSTS = ["169.254.169.254"]
    metadata = call_http(
        url_template="http://169.254.169.254/latest/{order}",
        method="GET",
        headers={},
        values={"order": "ZX1"},
        secret="",
        visitor="",
        timeout=2,
    )
    assert metadata.status == "refused" and "link-local" in metadata.error
    assert not order_system.requests


def test_a_redirect_is_not_followed(order_system, order_action):
    reply = lookup(order_action, "ZX3333")
    assert reply.status == "refused" and "redirect" in reply.call.error
    assert [r[1] for r in order_system.requests] == ["/orders/ZX3333"]


def test_plain_http_to_a_host_not_allowed_is_refused_when_the_action_is_saved(
    order_system, embedder, settings
):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="not on the allow-list"):
        make_action(order_system, name="Unlisted", url="https://orders.example.com/{order}")
    settings.ACTIONS_ALLOWED_HOSTS = [*settings.ACTIONS_ALLOWED_HOSTS, "orders.example.com"]
    with pytest.raises(ValidationError, match="HTTPS"):
        make_action(order_system, name="Elsewhere", url="http://orders.example.com/{order}")
    with pytest.raises(ValidationError, match="not the host"):
        make_action(order_system, name="Host", url="https://{order}.example.com/")


def test_values_are_url_encoded_so_they_cannot_change_the_path(order_system, embedder):
    action = make_action(order_system, name="Any", parameters=[{**ORDER, "pattern": r"ZX[\d/.]{4,8}"}])
    lookup(action, "ZX../../x")
    assert order_system.requests[-1][1] == "/orders/ZX..%2F..%2Fx"


def test_parameter_and_template_definitions_are_checked():
    with pytest.raises(ParameterError, match="at most 200"):
        parse_parameters([{**ORDER, "pattern": "a" * 201}])
    with pytest.raises(ParameterError, match="not a valid regular expression"):
        parse_parameters([{**ORDER, "pattern": "ZX(\\d"}])
    with pytest.raises(ParameterError, match="does not match"):
        parse_parameters([{**ORDER, "example": "AB12"}])
    with pytest.raises(TemplateError, match="debug"):
        validate_template("{% debug %}")
    with pytest.raises(TemplateError, match="load"):
        validate_template("{% load static %}")


# --- Admin and API -------------------------------------------------------------------------------


def test_the_api_defines_actions_with_a_write_only_secret_encrypted_at_rest(
    client, administrator, agent, order_system, embedder
):
    body = {
        "name": "Order status",
        "examples": ["Where is my order?"],
        "parameters": [ORDER],
        "url": f"{order_system.url}/orders/{{order}}",
        "headers": {"X-Api-Key": "{secret}"},
        "secret": API_KEY,
        "reply_template": REPLY,
    }
    assert (
        client.post("/api/actions", body, content_type="application/json", **bearer(agent)).status_code == 403
    )
    created = client.post("/api/actions", body, content_type="application/json", **bearer(administrator))
    assert created.status_code == 201, created.content
    action = Action.objects.get()
    assert created.json()["secret_set"] is True and API_KEY not in created.content.decode()
    assert API_KEY not in action.secret_encrypted and action.get_secret() == API_KEY
    listed = client.get("/api/actions", **bearer(administrator))
    assert API_KEY not in listed.content.decode() and listed.json()["items"][0]["version"] == 1

    changed = client.patch(
        f"/api/actions/{action.pk}",
        {"enabled": False},
        content_type="application/json",
        **bearer(administrator),
    )
    assert changed.json()["version"] == 2 and changed.json()["secret_set"] is True
    bad = client.patch(
        f"/api/actions/{action.pk}",
        {"parameters": [{**ORDER, "pattern": "ZX(\\d"}]},
        content_type="application/json",
        **bearer(administrator),
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_action"

    tested = client.post(
        f"/api/actions/{action.pk}/test", {}, content_type="application/json", **bearer(administrator)
    )
    assert tested.json()["status"] == "not_found"  # ZX1234, the example, is nobody's order here
    calls = client.get("/api/actions/calls", **bearer(administrator)).json()["items"]
    assert calls[0]["caller"] == "admin test" and calls[0]["status"] == "not_found"
    assert client.get("/api/actions/calls", **bearer(agent)).status_code == 403


def test_the_admin_never_shows_the_secret_and_tests_an_action(order_system, order_action, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-pw-pw-pw-1")
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(f"/admin/answers/action/{order_action.pk}/change/").content.decode()
    assert API_KEY not in page and order_action.secret_encrypted not in page
    assert "A secret is set" in page
    order_system.orders["ZX1234"] = ("admin:" + str(admin_user.pk), {"status": "shipped", "eta": "today"})
    response = browser.post(
        "/admin/answers/action/",
        {"action": "test_actions", "_selected_action": [order_action.pk]},
        follow=True,
    )
    assert "Your order ZX1234 is shipped and should arrive today." in response.content.decode()
    assert browser.get("/admin/answers/actioncall/").status_code == 200
    assert browser.get("/admin/answers/actioncall/add/").status_code == 403


def test_testing_an_action_needs_values_that_match(order_system, order_action, administrator):
    from core.errors import DomainError

    with pytest.raises(DomainError, match="matches its pattern"):
        do_test_action(administrator, order_action, {"order": "nope"})


@pytest.fixture
def desk_model(settings, tmp_path, demo_kb):
    """The desk with the scripted model of tests/test_desk_support.py."""
    from django.test import override_settings

    from assistant.desk.labels import seed_labels
    from assistant.models import TriageLabel

    seed_labels(TriageLabel)
    settings.DATA_DIR = tmp_path
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with override_settings(TEXT_GENERATOR_BACKEND="tests.test_desk_support.ScriptedModel"):
        yield


# --- The desk -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_desk_draft_opens_with_the_systems_answer(order_system, order_action, desk_model):
    from tests.conftest import customer_mail
    from tests.test_desk_support import drafted

    order_system.orders["ZX1234"] = ("ana@example.com", {"status": "shipped", "eta": "Friday"})
    mail = customer_mail(subject="My order", body="Hello, where is my order ZX1234? Thanks, Ana")
    ticket, draft = drafted(mail)
    sentence = "Your order ZX1234 is shipped and should arrive Friday."
    assert sentence in draft.body
    assert draft.body.index(sentence) < draft.body.index("Press and hold")  # before the KB text
    call = ActionCall.objects.get()
    assert call.ticket == ticket.pk and call.caller == "desk"
    assert draft.support[0]["text"] == sentence and draft.support[0]["action_call"] == call.pk
    assert {"action": order_action.pk, "version": 1, "action_call": call.pk} in draft.retrieved


def test_knowledge_base_questions_do_not_pick_the_action_and_order_questions_do(order_action):
    from answers.lookups.match import find_action

    for question in ("How long does delivery take?", "How do I return an order?", "What plans do you offer?"):
        assert find_action(question, "default") is None, question
    for question in (
        "Where is my order?",
        "Can you check order ZX1234 for me?",
        "What is the status of ZX1234?",
    ):
        match = find_action(question, "default")
        assert match is not None and match.action == order_action, question
    order_action.collection = "other"
    order_action.save()
    assert find_action("Where is my order?", "default") is None  # another knowledge base's action


def test_deleting_an_action_keeps_its_call_records(client, administrator, order_system, order_action):
    lookup(order_action, "ZX0404")
    deleted = client.delete(f"/api/actions/{order_action.pk}", **bearer(administrator))
    assert deleted.status_code == 204 and not Action.objects.exists()
    call = ActionCall.objects.get()
    assert call.action_id is None and call.action_name == "Order status" and call.status == "not_found"
    assert client.get(f"/api/actions/{order_action.pk}", **bearer(administrator)).status_code == 404


def test_an_mcp_tool_answers_through_the_same_template_and_record(embedder, settings):
    """The MCP kind, against the SDK-built order server of tests/mcp_order_server.py over stdio."""
    import sys
    from pathlib import Path

    from django.core.exceptions import ValidationError

    server = Path(__file__).parent / "mcp_order_server.py"
    command = f"{sys.executable} {server}"
    action = Action(
        name="Order status (MCP)",
        examples="Where is my order?",
        parameters=[{"name": "order_number", "label": "your order number", "pattern": r"ZX\d{4}"}],
        kind=Action.Kind.MCP,
        mcp_transport="stdio",
        mcp_target=command,
        mcp_tool="get_order_status",
        timeout_seconds=20,
        reply_template="Order {{ order_number }} is {{ result.status }}, due {{ result.expected_delivery }}.",
    )
    # A command typed in the admin runs on this machine: only the listed ones may.
    with pytest.raises(ValidationError, match="ACTIONS_MCP_COMMANDS"):
        action.full_clean()
    settings.ACTIONS_MCP_COMMANDS = [command]
    action.full_clean()
    action.save()
    # The admin lists the server's tools to pick one.
    from answers.lookups.runner import mcp_tools

    assert "get_order_status" in [tool["name"] for tool in mcp_tools(action)]
    reply = run_lookup(Plan(action, {"order_number": "ZX4471"}, None, 1.0), visitor="v", caller="test")
    assert reply.status == "ok" and reply.verified, reply.call.error
    assert reply.text == "Order ZX4471 is shipped, due 2026-12-09."
    failed = run_lookup(Plan(action, {"order_number": "ZX0000"}, None, 1.0), visitor="v", caller="test")
    assert failed.status == "failed" and "No order ZX0000" in failed.call.error and failed.offer_person

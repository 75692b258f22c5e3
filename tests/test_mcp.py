"""MCP both ways, with the official `mcp` SDK on the other end.

Parley as a server (`manage.py mcp_server`): the SDK's ClientSession over stdio (the command
started as a subprocess) and over streamable HTTP (the command serving on a free port), on a
fresh data directory with a few small documents, one of them private; plus the SDK's in-process
Client against the same server class for the per-call rules (arguments, rate limit, audit).

Parley as a client (answers/lookups/mcp.py): against a small order system built with the SDK's
MCPServer (tests/mcp_order_server.py), over stdio and streamable HTTP. No chat model is needed.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from contextlib import closing

import httpx
import httpx2
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from answers.lookups.mcp import McpError, call_mcp_tool, list_mcp_tools
from tests.conftest import REPO, ManagedServer, free_port

pytestmark = pytest.mark.slow

ROUTER_DOC = (
    "# Router lights\n\nA blinking orange light on the Brightline router means it is looking for a "
    "signal. Wait two minutes, then restart the router with the button at the back.\n"
)
RETURNS_DOC = (
    "# Returns\n\nYou can return a router within 30 days of delivery. Print the free returns label "
    "from your account page and drop the parcel at any post office.\n"
)
SECRET = "KESTREL-19"
PRIVATE_DOC = (
    "# Router lights for staff\n\nInternal: a blinking orange router light can be cleared with the "
    f"engineer override code {SECRET}. Never share the override code with customers.\n"
)
LIGHT_QUESTION = "What does a blinking orange router light mean?"


# --- Parley as an MCP server: a data directory, users and tokens as an admin makes them ------------


class McpParley(ManagedServer):
    """`manage.py mcp_server --transport http` (ManagedServer waits for its GET /health)."""

    command = "mcp_server"
    log_name = "mcp.log"


@pytest.fixture(scope="module")
def parley(tmp_path_factory):
    """Migrated, two public documents and one private one ingested, users kim (knowledge role)
    and olive (no role) with a token each."""
    data = tmp_path_factory.mktemp("mcp")
    docs = data / "docs"
    docs.mkdir()
    (docs / "router-lights.md").write_text(ROUTER_DOC)
    (docs / "returns.md").write_text(RETURNS_DOC)
    (data / "staff-router.md").write_text(PRIVATE_DOC)
    server = McpParley(data, free_port(), "--transport", "http")
    server.migrate()
    server.manage("ingest", str(docs))
    server.manage("ingest", "--private", str(data / "staff-router.md"))
    # Users and tokens as an admin makes them (create_api_token is the same ApiToken.issue).
    made = shell_print(
        server,
        textwrap.dedent(
            """
            import json
            from django.contrib.auth.models import Group, User
            from core.models import ApiToken
            from retrieval.models import Document
            kim = User.objects.create_user("kim")
            kim.groups.add(Group.objects.get_or_create(name="knowledge")[0])
            olive = User.objects.create_user("olive")
            print(json.dumps({
                "kim": ApiToken.issue(kim)[1],
                "olive": ApiToken.issue(olive)[1],
                "private": Document.objects.get(public=False).pk,
            }))
            """
        ),
    )
    server.tokens = json.loads(made)
    server.private_id = server.tokens.pop("private")
    return server


def shell_print(parley, code: str) -> str:
    """What `code` prints last, run by `manage.py shell` on the server's database."""
    return parley.manage("shell", "-c", code).stdout.strip().splitlines()[-1]


def stdio_params(parley, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp_server", "--transport", "stdio", *args],
        env=parley.env,
        cwd=str(REPO),
    )


def audit_count(parley, tool: str) -> int:
    """Read from the server's SQLite file (AuditEvent's table): a `manage.py shell` per count cost a
    Django start (4 s on the shared machine: `time manage.py shell -c "print(1)"`)."""
    with closing(sqlite3.connect(parley.data_dir / "parley.sqlite3")) as db:
        (count,) = db.execute(
            "select count(*) from config_auditevent where action = 'mcp.tool_called' and target_id = ?",
            (tool,),
        ).fetchone()
    return count


async def test_the_sdk_client_over_stdio_lists_searches_and_fetches_public_documents(parley):
    before = audit_count(parley, "search_knowledge_base")
    async with (
        stdio_client(stdio_params(parley, "--token", parley.tokens["kim"])) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"search_knowledge_base", "fetch_document"}
        assert set(tools["search_knowledge_base"].input_schema["properties"]) == {"query", "k"}

        found = await session.call_tool("search_knowledge_base", {"query": LIGHT_QUESTION, "k": 5})
        assert not found.is_error
        hits = found.structured_content["hits"]
        assert hits[0]["title"] == "Router lights"
        assert {"document_id", "title", "url", "snippet", "score"} <= set(hits[0])
        # The private document answers the question best, and is never among the hits.
        assert parley.private_id not in {hit["document_id"] for hit in hits}
        assert all(SECRET not in hit["snippet"] for hit in hits)

        fetched = await session.call_tool("fetch_document", {"document_id": hits[0]["document_id"]})
        assert not fetched.is_error
        document = fetched.structured_content
        assert document["title"] == "Router lights"
        assert "restart the router with the button at the back" in document["text"]
        assert document["url"] == f"/kb/{hits[0]['document_id']}/"

        private = await session.call_tool("fetch_document", {"document_id": parley.private_id})
        assert private.is_error
        assert private.content[0].text == f"There is no document {parley.private_id} in this knowledge base."
        assert SECRET not in private.model_dump_json()
    assert audit_count(parley, "search_knowledge_base") == before + 1


def test_stdio_refuses_to_start_without_a_valid_token_with_the_role(parley):
    # (A wrong token is refused by the same check: see the HTTP and revoked-token tests.)
    def start(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in parley.env.items() if key != "PARLEY_MCP_TOKEN"}
        return subprocess.run(
            [sys.executable, "manage.py", "mcp_server", "--transport", "stdio", *args],
            cwd=REPO,
            env={**env, "PARLEY_MCP_TOKEN": token} if token else env,
            input="",
            capture_output=True,
            text=True,
            timeout=120,
        )

    missing = start()
    assert missing.returncode == 1
    assert "An API token is needed" in missing.stderr
    no_role = start(token=parley.tokens["olive"])
    assert no_role.returncode == 1
    assert "needs the knowledge or agent role" in no_role.stderr


@pytest.fixture(scope="module")
def mcp_http(parley):
    parley.start()
    yield parley
    parley.stop()


async def test_the_sdk_client_over_http_with_a_bearer_token_searches(mcp_http):
    headers = {"Authorization": f"Bearer {mcp_http.tokens['kim']}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        streamable_http_client(f"{mcp_http.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        assert {tool.name for tool in (await session.list_tools()).tools} == {
            "search_knowledge_base",
            "fetch_document",
        }
        found = await session.call_tool("search_knowledge_base", {"query": "return a router", "k": 2})
        hits = found.structured_content["hits"]
        assert hits[0]["title"] == "Returns"
        assert len(hits) == 2
        assert mcp_http.private_id not in {hit["document_id"] for hit in hits}


def test_http_refuses_requests_without_a_valid_token_or_the_role(mcp_http):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    url = f"{mcp_http.url}/mcp"
    missing = httpx.post(url, json=body, headers=headers)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "unauthorized"
    wrong = httpx.post(url, json=body, headers={**headers, "Authorization": "Bearer pk_wrong"})
    assert wrong.status_code == 401
    no_role = httpx.post(
        url, json=body, headers={**headers, "Authorization": f"Bearer {mcp_http.tokens['olive']}"}
    )
    assert no_role.status_code == 403
    assert no_role.json()["error"]["message"] == "This token's user needs the knowledge or agent role."


# --- The per-call rules, in process (the SDK's own in-memory client) ------------------------------


@pytest.fixture
def kim_token(db):
    from django.contrib.auth.models import Group, User

    from core.models import ApiToken

    kim = User.objects.create_user("kim")
    kim.groups.add(Group.objects.get_or_create(name="knowledge")[0])
    token, raw = ApiToken.issue(kim, name="ide")
    return token, raw


@pytest.mark.django_db(transaction=True)
async def test_bad_arguments_get_a_plain_error_result(demo_kb, kim_token):
    from retrieval.mcp_server import KnowledgeBaseServer

    server = KnowledgeBaseServer("default", transport="stdio", stdio_token=kim_token[1])
    async with Client(server) as client:
        wrong_type = await client.call_tool("search_knowledge_base", {"query": "router", "k": "many"})
        assert wrong_type.is_error
        assert wrong_type.content[0].text.startswith(
            "Check the arguments: k: Input should be a valid integer"
        )
        missing = await client.call_tool("fetch_document", {})
        assert missing.content[0].text == "Check the arguments: document_id: Field required."
        empty = await client.call_tool("search_knowledge_base", {"query": "  "})
        assert empty.content[0].text == "Give a query: the question or words to search for."
        too_many = await client.call_tool("search_knowledge_base", {"query": "router", "k": 500})
        assert too_many.content[0].text == "k must be between 1 and 20."
        unknown = await client.call_tool("fetch_document", {"document_id": 987654})
        assert unknown.content[0].text == "There is no document 987654 in this knowledge base."
        ok = await client.call_tool("search_knowledge_base", {"query": "router", "k": 1})
        assert not ok.is_error  # the server is still serving


@pytest.mark.django_db(transaction=True)
async def test_calls_are_rate_limited_per_token_and_audited(demo_kb, kim_token, settings, monkeypatch):
    from asgiref.sync import sync_to_async

    from core.models import AuditEvent
    from retrieval import mcp_server

    settings.MCP_CALLS_PER_MINUTE = 2
    monkeypatch.setattr(mcp_server, "_clock", lambda: 1_800_000_030.0)  # one fixed minute
    server = mcp_server.KnowledgeBaseServer("default", transport="stdio", stdio_token=kim_token[1])
    async with Client(server) as client:
        for _ in range(2):
            allowed = await client.call_tool("fetch_document", {"document_id": 1})
            assert not allowed.content[0].text.startswith("Too many")
        refused = await client.call_tool("search_knowledge_base", {"query": "router"})
        assert refused.is_error
        assert refused.content[0].text == "Too many calls with this token; please wait 30 seconds."

    events = await sync_to_async(list)(AuditEvent.objects.filter(action="mcp.tool_called").order_by("pk"))
    assert len(events) == 2  # the refused call wrote nothing
    assert events[0].actor == "user:kim"
    assert events[0].data["tool"] == "fetch_document"
    assert events[0].data["token"] == kim_token[0].prefix
    assert events[0].data["collection"] == "default"


@pytest.mark.django_db(transaction=True)
async def test_a_token_revoked_mid_session_stops_working(demo_kb, kim_token):
    from asgiref.sync import sync_to_async
    from django.utils import timezone

    from retrieval.mcp_server import KnowledgeBaseServer

    token, raw = kim_token
    server = KnowledgeBaseServer("default", transport="stdio", stdio_token=raw)
    async with Client(server) as client:
        assert not (await client.call_tool("search_knowledge_base", {"query": "router"})).is_error
        token.revoked_at = timezone.now()
        await sync_to_async(token.save)()
        refused = await client.call_tool("search_knowledge_base", {"query": "router"})
        assert refused.is_error
        assert refused.content[0].text == "This API token is not valid."


# --- Parley as an MCP client (answers/lookups/mcp.py) against a small order system -----------------

ORDER_SERVER = f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'tests' / 'mcp_order_server.py'))}"


async def test_lists_and_calls_a_stdio_servers_tools():
    tools = {tool["name"]: tool for tool in await list_mcp_tools("stdio", ORDER_SERVER, timeout=60)}
    assert set(tools) == {"get_order_status", "greet", "slow_lookup", "huge_report"}
    assert tools["get_order_status"]["input_schema"]["required"] == ["order_number"]
    assert "status of one order" in tools["get_order_status"]["description"]

    status = await call_mcp_tool(
        "stdio", ORDER_SERVER, "get_order_status", {"order_number": "ZX4471"}, timeout=60
    )
    assert status == {"order_number": "ZX4471", "status": "shipped", "expected_delivery": "2026-12-09"}
    greeting = await call_mcp_tool("stdio", ORDER_SERVER, "greet", {"name": "Ann"}, timeout=60)
    assert greeting == {"text": "Hello, Ann!"}


async def test_an_error_result_a_timeout_and_a_huge_answer_raise_mcp_error():
    with pytest.raises(McpError, match=r"No order ZX9999\.$"):
        await call_mcp_tool("stdio", ORDER_SERVER, "get_order_status", {"order_number": "ZX9999"}, timeout=60)
    with pytest.raises(McpError, match="did not answer within 3 seconds"):
        await call_mcp_tool("stdio", ORDER_SERVER, "slow_lookup", {"seconds": 60}, timeout=3)
    with pytest.raises(McpError, match="too large"):
        await call_mcp_tool("stdio", ORDER_SERVER, "huge_report", {}, timeout=60)


async def test_a_bad_command_or_transport_is_a_plain_error():
    with pytest.raises(McpError, match="could not be started"):
        await list_mcp_tools("stdio", "/nonexistent/order-system --serve", timeout=30)
    with pytest.raises(McpError, match="Unknown MCP transport"):
        await list_mcp_tools("carrier-pigeon", "x", timeout=30)
    with pytest.raises(McpError, match="command cannot be read"):
        await list_mcp_tools("stdio", "python 'unclosed", timeout=30)
    with pytest.raises(McpError, match="closed the connection before answering"):
        await list_mcp_tools("stdio", f"{shlex.quote(sys.executable)} -c 'pass'", timeout=30)


@pytest.fixture(scope="module")
def order_http():
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "mcp_order_server.py"),
            "--http",
            str(port),
            "--token",
            "s3cret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)  # noqa: S310 - local test server
        except urllib.error.HTTPError:
            break  # answering (401/404): up
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the order server did not start") from None
            time.sleep(0.2)
        else:
            break
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait(timeout=10)


async def test_lists_and_calls_a_streamable_http_servers_tools_with_a_bearer_token(order_http):
    headers = {"Authorization": "Bearer s3cret"}
    tools = await list_mcp_tools("http", order_http, timeout=30, headers=headers)
    assert "get_order_status" in {tool["name"] for tool in tools}
    status = await call_mcp_tool(
        "http", order_http, "get_order_status", {"order_number": "ZX1000"}, timeout=30, headers=headers
    )
    assert status == {"order_number": "ZX1000", "status": "processing", "expected_delivery": None}
    with pytest.raises(McpError, match="No order ZX0000"):
        await call_mcp_tool(
            "http", order_http, "get_order_status", {"order_number": "ZX0000"}, timeout=30, headers=headers
        )
    with pytest.raises(McpError):
        await list_mcp_tools("http", order_http, timeout=30)  # no token: the server says 401
    with pytest.raises(McpError, match="must be an http"):
        await list_mcp_tools("http", "ftp://127.0.0.1/mcp", timeout=30)
    with pytest.raises(McpError, match="not an address Parley may connect to"):
        await list_mcp_tools("http", order_http, timeout=30, headers=headers, allowed_hosts=[])

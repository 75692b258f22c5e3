"""Parley's knowledge base as an MCP server (`python manage.py mcp_server`), for other assistants
and IDEs: `search_knowledge_base` (hybrid search) and `fetch_document`, over the PUBLIC documents
of one collection only: the same rule as everything a visitor sees (search's `public_only`).

Who may call: an API token (`manage.py create_api_token USERNAME`) whose user holds the
`knowledge` or `agent` role. Over HTTP it comes as `Authorization: Bearer` on every request (401
without a valid one, 403 without the role, before the MCP layer sees anything); over stdio it is
given at start-up (`--token` or PARLEY_MCP_TOKEN) and checked then. Either way it is checked again
on every tool call (a token revoked mid-session stops working), every call counts against the
token's allowance (MCP_CALLS_PER_MINUTE, in Django's cache: per process when embedded, shared
with Redis) and is written to the audit log with its outcome.

Bad arguments come back as an MCP error result with a plain message, never a crash. The ORM and
the embedder are synchronous, so each call does its work in `sync_to_async`.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.utils import timezone
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from core.audit import record_audit
from core.models import ApiToken, hash_token
from core.roles import AGENT, KNOWLEDGE, has_role
from retrieval.models import COLLECTION_NAME, Document
from retrieval.search import search

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

ROLES = (KNOWLEDGE, AGENT)
RATE_WINDOW = 60  # seconds: the allowance is per minute
MAX_QUERY_CHARS = 1000
SNIPPET_CHARS = 600
INSTRUCTIONS = (
    "Search this company's public knowledge base with search_knowledge_base, then read a whole "
    "document with fetch_document(document_id) from a hit. Cite the url of what you use."
)


class AccessRefused(Exception):
    """A token that is missing or wrong (401) or whose user lacks the role (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Caller:
    token_id: int
    token_prefix: str
    user: Any


def authenticate(raw_token: str) -> Caller:
    """The caller behind `raw_token`, or AccessRefused. Touches the token's last use."""
    raw_token = raw_token.strip()
    if not raw_token:
        raise AccessRefused(401, "An API token is needed: send it as 'Authorization: Bearer <token>'.")
    try:
        token = ApiToken.objects.select_related("user").get(
            token_hash=hash_token(raw_token), revoked_at__isnull=True
        )
    except ApiToken.DoesNotExist:
        raise AccessRefused(401, "This API token is not valid.") from None
    if not token.user.is_active:
        raise AccessRefused(401, "This API token is not valid.")
    if not has_role(token.user, *ROLES):
        raise AccessRefused(403, "This token's user needs the knowledge or agent role.")
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return Caller(token_id=token.pk, token_prefix=token.prefix, user=token.user)


def bearer_token(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _clock() -> float:
    return time.time()


def _count_call(caller: Caller) -> None:
    """One call against the token's per-minute allowance; ToolError once it is spent."""
    now = _clock()
    start = math.floor(now / RATE_WINDOW) * RATE_WINDOW
    key = f"parley:rate:mcp:token:{caller.token_id}:{int(start)}"
    cache.add(key, 0, timeout=RATE_WINDOW * 2)
    if cache.incr(key) > settings.MCP_CALLS_PER_MINUTE:
        wait = max(1, math.ceil(start + RATE_WINDOW - now))
        raise ToolError(f"Too many calls with this token; please wait {wait} seconds.")


# --- What the tools return -------------------------------------------------------------------------


class SearchHit(BaseModel):
    document_id: int
    title: str
    url: str = Field(description="Where a reader sees it: its web address, or /kb/<id>/ on Parley.")
    section: str
    snippet: str
    score: float


class SearchResults(BaseModel):
    collection: str
    hits: list[SearchHit]


class FetchedDocument(BaseModel):
    document_id: int
    title: str
    url: str
    language: str
    text: str
    truncated: bool = Field(description="True when the text was cut at the size limit.")


# --- The tools' work (synchronous: ORM and embedder) ------------------------------------------------


def _search(collection: str, query: str, k: int) -> SearchResults:
    query = query.strip()
    if not query:
        raise ToolError("Give a query: the question or words to search for.")
    if len(query) > MAX_QUERY_CHARS:
        raise ToolError(f"The query is too long: at most {MAX_QUERY_CHARS} characters.")
    if not 1 <= k <= settings.MCP_SEARCH_MAX_RESULTS:
        raise ToolError(f"k must be between 1 and {settings.MCP_SEARCH_MAX_RESULTS}.")
    hits = search(query, collection=collection, k=k, public_only=True)
    return SearchResults(
        collection=collection,
        hits=[
            SearchHit(
                document_id=hit.document_id,
                title=hit.title,
                url=hit.url,
                section=hit.section,
                snippet=_cut(hit.text, SNIPPET_CHARS),
                score=round(float(hit.score), 4),
            )
            for hit in hits
        ],
    )


def _fetch(collection: str, document_id: int) -> FetchedDocument:
    try:
        # Private, missing, unfinished and other collections' documents are the same "not found".
        document = Document.objects.get(
            pk=document_id, collection=collection, public=True, status=Document.Status.READY
        )
    except Document.DoesNotExist:
        raise ToolError(f"There is no document {document_id} in this knowledge base.") from None
    limit = settings.MCP_FETCH_MAX_CHARS
    text = join_chunks(document.chunks.order_by("ordinal").values_list("text", flat=True))
    return FetchedDocument(
        document_id=document.pk,
        title=document.title,
        url=document.url or f"/kb/{document.pk}/",
        language=document.language,
        text=text[:limit],
        truncated=len(text) > limit,
    )


def join_chunks(texts: Any) -> str:
    """The document's text from its chunks: a chunk may begin with the end of the one before it
    (chunking's overlap), which is left out so the text reads once."""
    out: list[str] = []
    for text in texts:
        if out:
            text = text[_overlap(out[-1], text) :]
        if text.strip():
            out.append(text)
    return "\n\n".join(part.strip() for part in out)


def _overlap(previous: str, text: str, longest: int = 2000) -> int:
    for size in range(min(len(previous), len(text), longest), 0, -1):
        if previous.endswith(text[:size]):
            return size
    return 0


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plain_error(exc: ToolError) -> ToolError:
    """The SDK's error as the caller should read it: its "Error executing tool X:" prefix and
    pydantic's wording off, a crash's details kept in our log only."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return ToolError(_plain(cause))
    if isinstance(exc, UnexpectedToolError):
        log.error("MCP tool call failed", exc_info=cause)
        return ToolError("The knowledge base could not answer this call; please try again later.")
    if isinstance(cause, ToolError):
        return ToolError(str(cause))
    return exc


def _plain(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "Check the arguments: " + "; ".join(parts) + "."


# --- The server -----------------------------------------------------------------------------------


class KnowledgeBaseServer(MCPServer):
    """MCPServer whose every tool call is authorised, rate-limited and audited in one place
    (`call_tool`), so a tool added later cannot forget to."""

    def __init__(self, collection: str, *, transport: str, stdio_token: str = "") -> None:
        if not COLLECTION_NAME.fullmatch(collection):
            raise ValueError("A collection name may contain only letters, digits, '-' and '_'.")
        super().__init__("parley-knowledge-base", instructions=INSTRUCTIONS, log_level="WARNING")
        self.collection = collection
        self.transport = transport
        self._stdio_token = stdio_token
        self.add_tool(self.search_knowledge_base, name="search_knowledge_base")
        self.add_tool(self.fetch_document, name="fetch_document")

    async def search_knowledge_base(self, query: str, k: int = 5) -> SearchResults:
        """Search the company's public knowledge base (hybrid: keywords and meaning). Returns
        the best passages, best first, each with its document's id, title, url and a snippet."""
        return await sync_to_async(_in_db_thread(_search))(self.collection, query, k)

    async def fetch_document(self, document_id: int) -> FetchedDocument:
        """The whole text of one public knowledge-base document (cut at a size limit), by the
        document_id a search hit gave."""
        return await sync_to_async(_in_db_thread(_fetch))(self.collection, document_id)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        raw = self._stdio_token if self.transport == "stdio" else _header_token(context)
        try:
            caller = await sync_to_async(_in_db_thread(authenticate))(raw)
        except AccessRefused as exc:
            raise ToolError(exc.message) from None
        # Counted before anything is written, so a caller past the allowance cannot fill the
        # audit log either.
        await sync_to_async(_count_call)(caller)
        outcome = "error"
        try:
            try:
                result = await super().call_tool(name, arguments, context)
            except ToolError as exc:
                raise _plain_error(exc) from None
            outcome = "error" if getattr(result, "is_error", False) else "ok"
            return result
        finally:
            await sync_to_async(_in_db_thread(_audit))(caller, self, name, arguments, outcome)


def _audit(
    caller: Caller, server: KnowledgeBaseServer, tool: str, arguments: dict[str, Any], outcome: str
) -> None:
    # The query is kept (cut short) so the log says what was looked for; it comes from a
    # staff integration, not from a visitor.
    shown = {key: str(value)[:200] for key, value in list(arguments.items())[:5]}
    record_audit(
        caller.user,
        "mcp.tool_called",
        target_type="mcp_tool",
        target_id=tool[:64],
        tool=tool[:100],
        token=caller.token_prefix,
        transport=server.transport,
        collection=server.collection,
        arguments=shown,
        outcome=outcome,
    )


def _header_token(context: Context[Any, Any] | None) -> str:
    headers = context.headers if context is not None else None
    return bearer_token(headers.get("authorization") if headers is not None else None)


def _in_db_thread(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` run as a request would be: stale connections closed before and after, since this
    long-running process has no request cycle to do it (CONN_MAX_AGE)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return run


# --- HTTP: the bearer check in front of the MCP endpoint --------------------------------------------


class RequireToken:
    """ASGI middleware: every HTTP request but GET /health needs a valid token with the role
    (401 with `WWW-Authenticate: Bearer`, or 403), before the MCP layer reads its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/health" and scope["method"] == "GET":
            await JSONResponse({"status": "ok"})(scope, receive, send)
            return
        raw = bearer_token(Request(scope).headers.get("authorization"))
        try:
            await sync_to_async(_in_db_thread(authenticate))(raw)
        except AccessRefused as exc:
            code = "unauthorized" if exc.status == 401 else "forbidden"
            headers = {"WWW-Authenticate": 'Bearer realm="parley"'} if exc.status == 401 else {}
            response: Response = JSONResponse(
                {"error": {"code": code, "message": exc.message}}, status_code=exc.status, headers=headers
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def http_app(server: KnowledgeBaseServer, host: str) -> ASGIApp:
    """The streamable-HTTP app at /mcp, stateless (each request stands alone and is
    authenticated on its own) with JSON responses, behind RequireToken."""

    app = server.streamable_http_app(stateless_http=True, json_response=True, host=host)
    return RequireToken(app)

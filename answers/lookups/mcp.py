"""Calling a tool of another company system's MCP server, with the official `mcp` SDK.

Two transports: "stdio" (target: a command line, split with shlex and run without a shell, in
a minimal environment: the SDK's short list of HOME, PATH, USER... and nothing of ours, so no
secret of Parley's reaches it) and "http" (target: a streamable-HTTP URL; `headers` such as
`{"Authorization": "Bearer ..."}` go with every request, and no redirect off the URL's origin
is followed; with `allowed_hosts`, the host must first pass retrieval's SSRF rule: public
addresses only, unless allow-listed, as retrieval/fetch.py's `checked_addresses` decides).

Each call is one short connection: start (or connect), initialise, list or call, close, all
inside `timeout` seconds (anyio.fail_after; a stdio server still running then is stopped, its
whole process group). What comes back is capped at MCP_CLIENT_MAX_RESULT_BYTES. Every failure,
whatever layer it comes from, is raised as McpError with a plain message.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from django.conf import settings
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CONNECTION_CLOSED, PaginatedRequestParams, TextContent

from retrieval.errors import IngestError
from retrieval.fetch import checked_addresses

TRANSPORTS = ("stdio", "http")
MAX_TOOL_PAGES = 10  # tools/list pages followed; a server that pages for ever stops here


class McpError(Exception):
    """An MCP server could not be reached, refused, failed, or answered with an error. The
    message is plain text for an admin (and the audit log), never a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def list_mcp_tools(
    transport: str,
    target: str,
    timeout: float,
    *,
    headers: dict[str, str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The server's tools, each {"name", "description", "input_schema"}."""
    tools: list[dict[str, Any]] = []
    async with _connected(transport, target, timeout, headers, allowed_hosts) as session:
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await session.list_tools(params=_page(cursor))
            tools.extend(
                {"name": tool.name, "description": tool.description or "", "input_schema": tool.input_schema}
                for tool in page.tools
            )
            cursor = page.next_cursor
            if cursor is None:
                break
    _check_size(tools)
    return tools


async def call_mcp_tool(
    transport: str,
    target: str,
    tool: str,
    arguments: dict[str, Any],
    timeout: float,
    *,
    headers: dict[str, str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The tool's structured content when it gives one, else {"text": its text parts joined}.
    A result marked as an error raises McpError with the server's text."""
    if not tool or len(tool) > 128:
        raise McpError("The tool name is missing or too long.")
    async with _connected(transport, target, timeout, headers, allowed_hosts) as session:
        result = await session.call_tool(tool, arguments)
    text = "\n".join(part.text for part in result.content if isinstance(part, TextContent))
    if result.is_error:
        raise McpError(_cut(text) or f"The tool {tool} failed without saying why.")
    answer: dict[str, Any] = (
        dict(result.structured_content) if isinstance(result.structured_content, dict) else {"text": text}
    )
    _check_size(answer)
    return answer


# --- One connection ---------------------------------------------------------------------------------


@asynccontextmanager
async def _connected(
    transport: str,
    target: str,
    timeout: float,
    headers: dict[str, str] | None,
    allowed_hosts: Sequence[str] | None,
) -> AsyncIterator[ClientSession]:
    """An initialised session, every failure below it turned into McpError, the whole use of it
    (connect, initialise, the caller's requests, close) inside `timeout` seconds."""
    if transport not in TRANSPORTS:
        raise McpError(f"Unknown MCP transport {transport!r}: use stdio or http.")
    if not 0 < timeout <= 600:
        raise McpError("The timeout must be between 0 and 600 seconds.")
    try:
        with anyio.fail_after(timeout):
            if transport == "http" and allowed_hosts is not None:
                await anyio.to_thread.run_sync(_check_host, target, allowed_hosts)
            async with _session(transport, target, headers) as session:
                yield session
    except McpError:
        raise
    except TimeoutError:
        raise McpError(f"The MCP server did not answer within {timeout:g} seconds.") from None
    except BaseException as exc:  # an SDK failure, often an exception group from its task groups
        leaf = _leaf(exc)
        if not isinstance(leaf, Exception):
            raise  # cancellation, KeyboardInterrupt: not ours to translate
        if isinstance(leaf, McpError):
            raise leaf from None
        if isinstance(leaf, TimeoutError):
            raise McpError(f"The MCP server did not answer within {timeout:g} seconds.") from None
        raise McpError(_describe(leaf)) from None


@asynccontextmanager
async def _session(
    transport: str, target: str, headers: dict[str, str] | None
) -> AsyncIterator[ClientSession]:
    if transport == "stdio":
        try:
            argv = shlex.split(target)
        except ValueError as exc:
            raise McpError(f"The MCP server command cannot be read: {exc}.") from None
        if not argv:
            raise McpError("The MCP server command is empty.")
        # env={}: the SDK passes only its safe defaults (HOME, PATH, ...), none of ours.
        params = StdioServerParameters(command=argv[0], args=argv[1:], env={})
        with open(os.devnull, "w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                yield session
        return
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise McpError("The MCP server address must be an http:// or https:// URL.")
    limit = settings.MCP_CLIENT_MAX_RESULT_BYTES
    # The overall deadline is fail_after's; these only bound each network step.
    async with (
        httpx2.AsyncClient(
            headers=headers or {}, timeout=httpx2.Timeout(30.0), follow_redirects=False
        ) as client,
        streamable_http_client(target, http_client=client, max_sse_event_size=limit) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _check_host(url: str, allowed: Sequence[str]) -> None:
    """The retrieval SSRF rule (public addresses only unless allow-listed), checked once before
    connecting. A name re-resolved by the HTTP client later is not pinned to this answer."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise McpError("The MCP server address must be an http:// or https:// URL.")
    try:
        checked_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), allowed)
    except IngestError:
        raise McpError(f"{parts.hostname} is not an address Parley may connect to.") from None
    except Exception as exc:
        raise McpError(f"Could not reach the MCP server: {exc}") from None


def _page(cursor: str | None) -> PaginatedRequestParams | None:
    return None if cursor is None else PaginatedRequestParams(cursor=cursor)


def _leaf(exc: BaseException) -> BaseException:
    """The first real failure inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: Exception) -> str:
    if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
        return "The MCP server closed the connection before answering (did it start?)."
    if isinstance(exc, MCPError):
        return f"The MCP server refused the request: {_cut(exc.message)}"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"The MCP server answered HTTP {exc.response.status_code}."
    if isinstance(exc, httpx2.HTTPError):
        return f"Could not reach the MCP server: {_cut(str(exc)) or type(exc).__name__}."
    if isinstance(exc, FileNotFoundError | PermissionError):
        return "The MCP server command could not be started: no such program, or not allowed to run it."
    if isinstance(exc, OSError):
        return f"The MCP server command could not be started: {_cut(str(exc))}."
    return f"The MCP server failed: {_cut(str(exc)) or type(exc).__name__}."


def _cut(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_size(value: Any) -> None:
    size = len(json.dumps(value, ensure_ascii=False, default=str).encode())
    if size > settings.MCP_CLIENT_MAX_RESULT_BYTES:
        raise McpError(
            f"The MCP server's answer is too large ({size} bytes; the limit is "
            f"{settings.MCP_CLIENT_MAX_RESULT_BYTES})."
        )

"""`python manage.py mcp_server [--transport stdio|http] [--host 127.0.0.1 --port 8200]
[--collection NAME] [--token TOKEN]`: the knowledge base's public documents as an MCP server
(retrieval/mcp_server.py).

stdio: an MCP client starts this command itself; the token comes as `--token` or in
PARLEY_MCP_TOKEN and is checked before anything is served. http: streamable HTTP at
http://HOST:PORT/mcp; every request brings its own `Authorization: Bearer` token.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from django.core.management.base import BaseCommand, CommandError, CommandParser

from retrieval.mcp_server import AccessRefused, KnowledgeBaseServer, authenticate, http_app
from retrieval.models import COLLECTION_NAME


class Command(BaseCommand):
    help = "Serve knowledge-base search and document fetch over MCP (stdio or streamable HTTP)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
        parser.add_argument("--host", default="127.0.0.1", help="http only (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8200, help="http only (default 8200).")
        parser.add_argument("--collection", default="default", help="The collection to serve.")
        parser.add_argument(
            "--token",
            default="",
            help="stdio only: the API token to act with (or set PARLEY_MCP_TOKEN). Its user needs "
            "the knowledge or agent role.",
        )

    def handle(
        self, *args: Any, transport: str, host: str, port: int, collection: str, token: str, **options: Any
    ) -> None:
        if not COLLECTION_NAME.fullmatch(collection):
            raise CommandError("--collection may contain only letters, digits, '-' and '_'")
        if not 0 < port < 65536:
            raise CommandError("--port must be between 1 and 65535")
        if transport == "stdio":
            token = token or os.environ.get("PARLEY_MCP_TOKEN", "")
            try:
                authenticate(token)
            except AccessRefused as exc:
                raise CommandError(exc.message) from None
            server = KnowledgeBaseServer(collection, transport="stdio", stdio_token=token)
            anyio.run(server.run_stdio_async)
            return
        import uvicorn

        from inference.services import get_embedder

        server = KnowledgeBaseServer(collection, transport="http")
        get_embedder()  # loaded before serving, not inside the first caller's search
        self.stderr.write(f"MCP server for collection {collection!r} at http://{host}:{port}/mcp")
        uvicorn.run(http_app(server, host), host=host, port=port, log_level="warning")

"""A stand-in for a company's order system as an MCP server, built with the official SDK's
MCPServer, for tests/test_mcp.py: `python tests/mcp_order_server.py` serves stdio;
`python tests/mcp_order_server.py --http PORT` serves streamable HTTP at /mcp (and, with
`--token T`, refuses requests without `Authorization: Bearer T`)."""

from __future__ import annotations

import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

ORDERS = {"ZX4471": ("shipped", "2026-12-09"), "ZX1000": ("processing", None)}

server = MCPServer("orders")


class OrderStatus(BaseModel):
    order_number: str
    status: str
    expected_delivery: str | None


@server.tool()
def get_order_status(order_number: str) -> OrderStatus:
    """The status of one order, by its number (ZX followed by four digits)."""
    if order_number not in ORDERS:
        raise ToolError(f"No order {order_number}.")
    status, delivery = ORDERS[order_number]
    return OrderStatus(order_number=order_number, status=status, expected_delivery=delivery)


@server.tool(structured_output=False)
def greet(name: str) -> str:
    """Plain text, no structured content."""
    return f"Hello, {name}!"


@server.tool()
def slow_lookup(seconds: float) -> str:
    """Sleeps, standing in for a system that hangs."""
    time.sleep(seconds)
    return "late"


@server.tool()
def huge_report() -> str:
    """Two megabytes of text."""
    return "x" * 2_000_000


def main() -> None:
    if "--http" not in sys.argv:
        server.run("stdio")
        return
    import uvicorn
    from starlette.responses import PlainTextResponse

    port = int(sys.argv[sys.argv.index("--http") + 1])
    token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
    app = server.streamable_http_app()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and token is not None:
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"").decode() != f"Bearer {token}":
                await PlainTextResponse("no", status_code=401)(scope, receive, send)
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()

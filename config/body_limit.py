"""Request bodies capped before Django reads them (ASGI middleware around the HTTP app).

Django's ASGI handler reads the whole body into a spooled temporary file before any view, form
limit or `DATA_UPLOAD_MAX_MEMORY_SIZE` check runs: a 4 GB POST to any URL would fill the temporary
directory. This wrapper refuses a declared Content-Length over the path's limit at once, and
cuts a streamed (chunked) body the moment it passes the limit, answering 413 in the API's error
shape. Django's own settings cannot do this: they apply after the body was read.

Limits are data (settings.REQUEST_BODY_LIMITS, longest matching path prefix wins, else
REQUEST_MAX_BODY_BYTES): the upload endpoints get their file limit plus room for the multipart
envelope; everything else is a form or a JSON body.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings


def limit_for(path: str) -> int:
    best, limit = -1, settings.REQUEST_MAX_BODY_BYTES
    for prefix, value in settings.REQUEST_BODY_LIMITS.items():
        if path.startswith(prefix) and len(prefix) > best:
            best, limit = len(prefix), value
    return limit


def _declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1  # malformed: refused below like an oversized one
    return None


async def _refuse(send, limit: int) -> None:
    body = json.dumps(
        {"error": {"code": "too_large", "message": f"The request body is over the limit of {limit} bytes."}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope.get("path", ""))
        declared = _declared_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await _refuse(send, limit)
            return
        received = 0
        over = started = False

        async def limited_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django treats a disconnect while reading as an aborted request and sends
                    # nothing; the 413 is ours to send once it has returned.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        if over and not started:
            await _refuse(send, limit)

"""The edge: ASGI middleware that checks the bearer key and the body size before FastAPI parses
anything, and counts and logs every request (streams included, until their last byte)."""

from __future__ import annotations

import hmac
import logging
import time

from django.conf import settings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.server.errors import APIError, ClientGone
from inference.server.metrics import Metrics

log = logging.getLogger(__name__)

ENDPOINTS = {
    "/v1/models",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/images/generations",
    "/health",
    "/metrics",
}


class Edge:
    """ASGI middleware: checks the bearer key and the body size before FastAPI parses anything,
    and counts every request (streams included, until their last byte)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500  # an exception before the response started

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            refusal = self._refuse(scope)
            if refusal is None and scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, receive)
                if body is None:
                    limit = settings.INFERENCE_SERVER_MAX_BODY_BYTES
                    refusal = APIError(
                        413, f"The body is larger than {limit} bytes.", code="request_too_large"
                    )
                else:
                    receive = _replay(body, receive)
            if refusal is not None:
                await refusal.response()(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        except ClientGone:
            status = 499  # hung up while sending the body: nobody to answer
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status)).inc()
            log.info(
                "event=inference_request endpoint=%s status=%s seconds=%.3f",
                endpoint,
                status,
                time.perf_counter() - started,
            )

    def _refuse(self, scope: Scope) -> APIError | None:
        key = settings.INFERENCE_SERVER_API_KEY
        if not key or not scope["path"].startswith("/v1/"):
            return None
        given = dict(scope["headers"]).get(b"authorization", b"")
        expected = f"Bearer {key}".encode()
        if hmac.compare_digest(given, expected):  # constant time: no guessing the key byte by byte
            return None
        message = "Missing bearer key." if not given else "Incorrect bearer key."
        return APIError(
            401, message, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="parley"'}
        )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is over the limit (refused without reading the rest)."""
        limit = settings.INFERENCE_SERVER_MAX_BODY_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay_receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's own would

    return replay_receive

"""Request bodies are capped before Django reads them (issue: a 4 GB POST to any URL filled /tmp,
because Django's ASGI handler spools the whole body to a temporary file before any size check)."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
from django.test import override_settings

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024


async def _post(path: str, chunks: int, *, content_length: int | str | None = None) -> tuple[int, bytes, int]:
    """POST `chunks` chunks of 64 KiB through the real ASGI application; returns the status, the
    body and how many chunks the application pulled from the client."""
    pulled = 0
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/octet-stream")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        if pulled < chunks:
            pulled += 1
            return {"type": "http.request", "body": b"x" * CHUNK, "more_body": pulled < chunks}
        await asyncio.Event().wait()  # a client that stays connected until the answer comes

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, pulled


@override_settings(REQUEST_MAX_BODY_BYTES=256 * 1024)
async def test_a_streamed_body_over_the_limit_is_cut_off_with_413_before_it_is_read_whole():
    status, body, pulled = await _post("/api/tickets", chunks=1000)  # 64 MB offered
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert pulled <= 5  # 256 KiB is 4 chunks: reading stopped at the fifth


async def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body():
    status, body, pulled = await _post("/health", chunks=1, content_length=4 * 1024**3)
    assert status == 413
    assert pulled == 0
    assert "limit" in json.loads(body)["error"]["message"]


async def test_a_malformed_content_length_is_refused():
    for value in ("-5", "12abc"):
        status, _, pulled = await _post("/api/tickets", chunks=1, content_length=value)
        assert status == 413 and pulled == 0


@override_settings(REQUEST_MAX_BODY_BYTES=256 * 1024)
async def test_uploads_keep_their_own_larger_limit():
    # 1 MiB to the document upload endpoint is under INGEST_MAX_FILE_BYTES: Django answers it
    # (it refuses an anonymous client), not the body cap.
    status, _, pulled = await _post("/api/documents", chunks=16)
    assert status in (401, 403)
    assert pulled == 16


@pytest.mark.slow
def test_serve_answers_413_to_an_endless_chunked_post_and_keeps_serving(live_parley):
    host, port = "127.0.0.1", live_parley.port
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.putrequest("POST", "/health")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"y" * (256 * 1024)
    try:  # offer 1 GB; the server answers and closes long before
        for _ in range(4096):
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    health = http.client.HTTPConnection(host, port, timeout=30)
    health.request("GET", "/health")
    assert health.getresponse().status == 200

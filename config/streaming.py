"""File downloads under ASGI without Django's "StreamingHttpResponse must consume synchronous
iterators" warning.

WhiteNoise (static files: widget.js, the stylesheet) and FileResponse views stream a file through
a synchronous iterator. Served by uvicorn, Django then reads the whole file into a list in a
thread and warns on every such response. `async_file_streams` hands it an asynchronous iterator
instead, which reads the file block by block in a worker thread, as Django asks. Under WSGI and
in Django's test client (a synchronous request) the response is left as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

_DONE = object()


def _next_block(blocks: Iterator[bytes]) -> object:
    return next(blocks, _DONE)


async def _in_thread(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(_next_block, thread_sensitive=False)
    while (block := await read(blocks)) is not _DONE:
        yield block  # type: ignore[misc]


def async_file_streams(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Middleware (first in MIDDLEWARE, so it sees WhiteNoise's responses too)."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        if (
            isinstance(request, ASGIRequest)
            and isinstance(response, StreamingHttpResponse)
            and not response.is_async
        ):
            # The file's own close() stays registered on the response (FileResponse did it); the
            # content is a sync iterator here (is_async is False), which the type cannot say.
            blocks: Iterator[bytes] = iter(response.streaming_content)  # type: ignore[arg-type]
            response.streaming_content = _in_thread(blocks)
        return response

    return middleware

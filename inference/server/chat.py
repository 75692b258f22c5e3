"""`POST /v1/chat/completions`: the request turned into messages and GenerationParams, one
ChatCall per completion, answered as one JSON body or as server-sent events; and the helpers that
free the engine slot when a client hangs up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from typing import Any, TypeVar

import anyio
from django.conf import settings
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Send

from inference.base import ChatMessage, GenerationParams, InferenceError, ModelBusy, TextGenerator, Usage
from inference.server.catalog import find_model
from inference.server.errors import APIError, ClientGone, raise_api
from inference.server.metrics import Metrics
from inference.server.schemas import ChatRequest, MessageIn

log = logging.getLogger(__name__)
T = TypeVar("T")


# --- Disconnects and server-sent events --------------------------------------------------------


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work` unless the client hangs up first; then cancel it (freeing its model slot)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGone()
    return task.result()


async def _close(deltas: AsyncIterable[Any]) -> None:
    """Close a generation's iterator even inside a cancelled scope: that frees the engine slot."""
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


class EventStream(StreamingResponse):
    """Server-sent events whose generator is always closed when the response ends, including
    when the client disconnects mid-stream (Starlette only cancels it)."""

    media_type = "text/event-stream"

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await _close(self.body_iterator)


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n"


# --- Chat ------------------------------------------------------------------------------------


def _messages(items: list[MessageIn]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for i, item in enumerate(items):
        role = "system" if item.role == "developer" else item.role
        if role not in ("system", "user", "assistant"):
            raise APIError(400, f"Unsupported role '{item.role}'.", param=f"messages[{i}].role")
        content = item.content or ""
        if isinstance(content, list):
            if any(part.type != "text" or part.text is None for part in content):
                raise APIError(400, "Only text content parts are supported.", param=f"messages[{i}].content")
            content = "".join(part.text or "" for part in content)
        out.append({"role": role, "content": content})
    return out


def _params(body: ChatRequest) -> GenerationParams:
    if body.n not in (None, 1):
        raise APIError(400, "Only n=1 is supported.", param="n")
    if body.logprobs:
        raise APIError(400, "logprobs are not supported.", param="logprobs")
    if body.tools:
        raise APIError(400, "Tools are not supported.", param="tools")
    name = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    limit = settings.INFERENCE_MAX_NEW_TOKENS
    if max_tokens is None:
        max_tokens = limit
    elif not 1 <= max_tokens <= limit:
        raise APIError(400, f"{name} must be between 1 and {limit}.", param=name, code="invalid_value")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4:
        raise APIError(400, "At most 4 stop sequences are supported.", param="stop")
    return GenerationParams(
        max_tokens=max_tokens,
        # OpenAI's defaults (sampling at 1.0), not GenerationParams' greedy one.
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=tuple(s for s in stop if s),
        repetition_penalty=body.repetition_penalty or 1.0,
        ignore_eos=bool(body.ignore_eos),
    )


def _usage_body(usage: Usage | None) -> dict[str, int]:
    prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class ChatCall:
    """One chat completion: the generation, its timing, and the metrics it feeds."""

    def __init__(self, metrics: Metrics, generator: TextGenerator, body: ChatRequest) -> None:
        self.metrics = metrics
        self.model = generator.model_version
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.generation = generator.stream(_messages(body.messages), _params(body))
        self.deltas = aiter(self.generation)
        self.first_seen = False
        self.finished = False

    async def next(self) -> str | None:
        """The next text delta, or None at the end."""
        try:
            text = await anext(self.deltas)
        except StopAsyncIteration:
            return None
        if not self.first_seen:
            self.first_seen = True
            self.metrics.ttft.observe(time.perf_counter() - self.started)
        return text

    async def finish(self) -> None:
        """Close the generation (idempotent) and count its tokens."""
        if self.finished:
            return
        self.finished = True
        await _close(self.deltas)
        usage = self.generation.usage
        if usage is not None:
            self.metrics.prompt_tokens.inc(usage.prompt_tokens)
            self.metrics.generated_tokens.inc(usage.completion_tokens)

    @property
    def finish_reason(self) -> str:
        usage = self.generation.usage
        return "length" if usage is not None and usage.finish_reason == "length" else "stop"

    def chunk(self, delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }


async def _collect(call: ChatCall) -> str:
    parts = []
    while (text := await call.next()) is not None:
        parts.append(text)
    return "".join(parts)


async def chat_completions(request: Request, body: ChatRequest) -> Response:
    metrics: Metrics = request.app.state.metrics
    call = ChatCall(metrics, await find_model("chat", body.model), body)
    endpoint = "/v1/chat/completions"
    try:
        if not body.stream:
            text = await _until_disconnect(request, _collect(call))
        else:
            # Wait for the first token before answering, so a refusal (busy, too long) is an
            # HTTP status rather than an error event inside a 200 stream.
            first = await _until_disconnect(request, call.next())
    except InferenceError as exc:
        await call.finish()
        raise_api(exc, metrics, endpoint, param="messages")
    except BaseException:
        await call.finish()
        raise
    if not body.stream:
        await call.finish()
        return JSONResponse(
            {
                "id": call.id,
                "object": "chat.completion",
                "created": call.created,
                "model": call.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": call.finish_reason,
                    }
                ],
                "usage": _usage_body(call.generation.usage),
            }
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventStream(
        _chat_events(call, first, include_usage),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _chat_events(call: ChatCall, first: str | None, include_usage: bool) -> AsyncIterator[str]:
    def event(payload: dict[str, Any]) -> str:
        if include_usage:
            payload["usage"] = None  # as OpenAI: null on every chunk but the last
        return _sse(payload)

    try:
        yield event(call.chunk({"role": "assistant", "content": ""}))
        text = first
        while text is not None:
            if text:
                yield event(call.chunk({"content": text}))
            text = await call.next()
        await call.finish()
        yield event(call.chunk({}, call.finish_reason))
        if include_usage:
            final = call.chunk({})
            final["choices"] = []
            yield _sse({**final, "usage": _usage_body(call.generation.usage)})
    except Exception as exc:
        # Headers are sent: report the failure in-band, as OpenAI does; the client raises it.
        if isinstance(exc, InferenceError):
            if isinstance(exc, ModelBusy):
                call.metrics.busy.labels("/v1/chat/completions").inc()
            error = APIError.from_inference(exc)
        else:
            log.exception("event=inference_internal_error path=/v1/chat/completions")
            error = APIError(500, "Internal error.", type="server_error", code="internal_error")
        yield _sse(
            {"error": {"message": error.message, "type": error.type, "param": None, "code": error.code}}
        )
    finally:
        await call.finish()
    yield "data: [DONE]\n\n"

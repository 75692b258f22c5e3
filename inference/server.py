"""The inference layer as an OpenAI-compatible HTTP service (`manage.py inference_server`).

The server knows nothing of batching or of models: every route calls one of the three interfaces
of inference/services.py (TextGenerator, Embedder, ImageGenerator), so whatever engine sits behind
them is served unchanged. What it adds is the HTTP edge: the bearer key, the body size limit,
OpenAI-shaped errors (a client gets a 4xx for anything it sent wrong, never a 500), server-sent
events, and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import anyio
import numpy as np
from django.conf import settings
from django.db import close_old_connections
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.base import (
    ChatMessage,
    GenerationParams,
    InferenceError,
    InputTooLong,
    ModelBusy,
    ModelUnavailable,
)
from inference.images import InvalidImageRequest
from inference.services import get_embedder, get_image_generator, get_text_generator

log = logging.getLogger(__name__)
T = TypeVar("T")

KINDS: dict[str, tuple[Callable[[], Any], str]] = {
    # kind -> (backend getter, the setting naming its model: accepted as an alias of the id)
    "chat": (get_text_generator, "CHAT_MODEL"),
    "embedding": (get_embedder, "EMBEDDING_MODEL"),
    "image": (get_image_generator, "IMAGE_MODEL"),
}
ENDPOINTS = {
    "/v1/models",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/images/generations",
    "/health",
    "/metrics",
}
IMAGE_PARAMS = {  # InvalidImageRequest.code -> the request field at fault
    "empty_prompt": "prompt",
    "invalid_size": "size",
    "invalid_steps": "steps",
    "invalid_guidance": "guidance",
    "invalid_seed": "seed",
}
MAX_SEED = 2**63 - 1
STARTED = int(time.time())
SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")


# --- Errors ----------------------------------------------------------------------------------


class APIError(Exception):
    """An error answered as OpenAI does: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)

    @classmethod
    def from_inference(cls, exc: InferenceError, param: str | None = None) -> APIError:
        if isinstance(exc, InvalidImageRequest):
            return cls(400, exc.message, param=IMAGE_PARAMS.get(exc.code, param), code=exc.code)
        if isinstance(exc, InputTooLong):
            return cls(400, exc.message, param=param, code="context_length_exceeded")
        if isinstance(exc, ModelBusy):
            # Retry-After: the openai client waits this long before its own retries.
            return cls(429, exc.message, type="rate_limit_error", code="busy", headers={"Retry-After": "1"})
        if isinstance(exc, ModelUnavailable):
            return cls(503, exc.message, type="server_error", code="model_unavailable")
        return cls(500, exc.message, type="server_error", code=exc.code)


class ClientGone(Exception):
    """The client closed the connection while we worked for it."""


# pydantic names the member of a union that failed in `loc`: not part of the parameter's path.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def _validation_error(exc: RequestValidationError) -> APIError:
    first = next(iter(exc.errors()), {})
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return APIError(400, f"The body is not valid JSON ({detail}).", code="invalid_json")
    param = ""
    for part in first.get("loc", ())[1:]:  # loc[0] is "body"
        if isinstance(part, int):
            param += f"[{part}]"
        elif part.isidentifier() and part[:1].islower() and part not in _TYPE_TAGS:
            param += f".{part}" if param else part
    if not param:
        return APIError(400, f"The body must be a JSON object ({first.get('msg', 'invalid')}).")
    return APIError(400, f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param)


# --- Request bodies --------------------------------------------------------------------------


class _Body(BaseModel):
    # Strict: "8" is not a number here, as with OpenAI. Unknown fields are accepted and ignored,
    # since clients send ones we have no use for (user, metadata, store, ...).
    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Body):
    type: str
    text: str | None = None


class MessageIn(_Body):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(_Body):
    include_usage: bool | None = None


class ChatRequest(_Body):
    model: str
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    n: int | None = None
    repetition_penalty: float | None = Field(None, gt=0, le=10)  # vLLM's extensions
    ignore_eos: bool | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None


class ImageRequest(_Body):
    prompt: str = Field(min_length=1)
    model: str | None = None
    n: int | None = None
    size: str | None = None
    response_format: str | None = None
    # Our extensions (extra_body in the openai client).
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = Field(None, ge=0, le=50)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)


# --- Metrics ---------------------------------------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app: two apps in one process (tests) never clash
        r = self.registry
        self.requests = Counter(
            "parley_inference_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.in_flight = Gauge("parley_inference_requests_in_flight", "Requests being served", registry=r)
        self.busy = Counter(
            "parley_inference_busy_refusals",
            "Requests refused because the model was busy",
            ["endpoint"],
            registry=r,
        )
        self.prompt_tokens = Counter("parley_inference_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated_tokens = Counter("parley_inference_generated_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram(
            "parley_inference_time_to_first_token_seconds",
            "From request to first streamed token, queueing included",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )


# --- The edge: key, body size, metrics (before any parsing) -------------------------------------


class Edge:
    """ASGI middleware: checks the bearer key and the body size before FastAPI parses anything,
    and counts every request (streams included, until their last byte)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500  # an exception before the response started

        async def counting_send(message) -> None:
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

    def _refuse(self, scope) -> APIError | None:
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

    async def _read_body(self, scope, receive) -> bytes | None:
        """The whole body, or None when it is over the limit (refused without reading the rest)."""
        limit = settings.INFERENCE_SERVER_MAX_BODY_BYTES
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
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


def _replay(body: bytes, receive):
    sent = False

    async def replay_receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's own would

    return replay_receive


# --- Helpers ---------------------------------------------------------------------------------


async def _backend(kind: str) -> Any:
    """The loaded backend of a kind (loading it the first time, off the event loop)."""
    getter, _ = KINDS[kind]

    def get() -> Any:
        try:
            return getter()
        finally:
            close_old_connections()  # the registry look-up's, on this worker thread

    try:
        return await asyncio.to_thread(get)
    except InferenceError:
        raise
    except Exception as exc:
        log.exception("event=model_load_failed kind=%s", kind)
        raise ModelUnavailable(f"The {kind} model is not available on this server.") from exc


def aliases(kind: str, model_version: str) -> set[str]:
    """Names a client may use for a model: its registry key ("chat:SmolLM2-135M-Instruct@9f2c..."),
    the key without its kind, the plain name, and the setting that configured it (so a client
    configured like the server, e.g. Parley's own remote backends, finds it by that)."""
    rest = model_version.split(":", 1)[-1]
    setting = str(getattr(settings, KINDS[kind][1]))
    return {model_version, rest, rest.split("@", 1)[0], setting, Path(setting).name} - {""}


async def _model(kind: str, requested: str | None) -> Any:
    backend = await _backend(kind)
    if requested is not None and requested not in aliases(kind, backend.model_version):
        raise APIError(
            404,
            f"The model '{requested}' does not exist or is not a {kind} model; "
            f"this server has '{backend.model_version}'.",
            param="model",
            code="model_not_found",
        )
    return backend


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


async def _close(deltas: AsyncIterator[str]) -> None:
    """Close a generation's iterator even inside a cancelled scope: that frees the engine slot."""
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


class EventStream(StreamingResponse):
    """Server-sent events whose generator is always closed when the response ends, including
    when the client disconnects mid-stream (Starlette only cancels it)."""

    media_type = "text/event-stream"

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await _close(self.body_iterator)  # type: ignore[arg-type]


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


def _usage_body(usage) -> dict[str, int]:
    prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class ChatCall:
    """One chat completion: the generation, its timing, and the metrics it feeds."""

    def __init__(self, metrics: Metrics, generator, body: ChatRequest) -> None:
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

    def chunk(self, delta: dict, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }


def _raise_api(exc: InferenceError, metrics: Metrics, endpoint: str, param: str | None = None) -> NoReturn:
    if isinstance(exc, ModelBusy):
        metrics.busy.labels(endpoint).inc()
    raise APIError.from_inference(exc, param) from exc


async def _collect(call: ChatCall) -> str:
    parts = []
    while (text := await call.next()) is not None:
        parts.append(text)
    return "".join(parts)


async def chat_completions(request: Request, body: ChatRequest) -> Response:
    metrics: Metrics = request.app.state.metrics
    call = ChatCall(metrics, await _model("chat", body.model), body)
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
        _raise_api(exc, metrics, endpoint, param="messages")
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


# --- Embeddings and images ---------------------------------------------------------------------


async def embeddings(request: Request, body: EmbeddingRequest) -> dict[str, Any]:
    embedder = await _model("embedding", body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not 1 <= len(texts) <= 2048:
        raise APIError(400, "input must hold between 1 and 2048 texts.", param="input")
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise APIError(400, f"This model only gives {embedder.dim} dimensions.", param="dimensions")

    def work() -> tuple[np.ndarray, int]:
        return embedder.embed(texts), sum(embedder.count_tokens(t) for t in texts)

    try:
        vectors, tokens = await asyncio.to_thread(work)  # (n, dim) float32
    except InferenceError as exc:
        _raise_api(exc, request.app.state.metrics, "/v1/embeddings", param="input")
    request.app.state.metrics.prompt_tokens.inc(tokens)
    if body.encoding_format == "base64":
        # What the openai client asks for by default: little-endian float32 bytes.
        rows: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        rows = vectors.tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": embedder.model_version,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _size(size: str | None) -> dict[str, int]:
    if size in (None, "auto"):
        return {}
    match = SIZE.fullmatch(size)
    side = settings.IMAGE_MAX_SIDE
    if not match or not all(64 <= int(n) <= side and int(n) % 8 == 0 for n in match.groups()):
        raise APIError(400, f"size must be 'WxH', multiples of 8 from 64 to {side}.", param="size")
    return {"width": int(match[1]), "height": int(match[2])}


async def images_generations(request: Request, body: ImageRequest) -> dict[str, Any]:
    if body.n not in (None, 1):
        raise APIError(400, "Only n=1 is supported.", param="n")
    if body.response_format not in (None, "b64_json"):
        raise APIError(
            400,
            "Only response_format 'b64_json' is supported (this server keeps no files).",
            param="response_format",
        )
    if body.steps is not None and not 1 <= body.steps <= settings.IMAGE_MAX_STEPS:
        raise APIError(400, f"steps must be between 1 and {settings.IMAGE_MAX_STEPS}.", param="steps")
    options = {
        key: value
        for key, value in (("steps", body.steps), ("guidance", body.guidance), ("seed", body.seed))
        if value is not None
    }
    size = _size(body.size)
    generator = await _model("image", body.model)
    state = request.app.state

    def work() -> bytes:
        image = generator.generate(body.prompt, body.negative_prompt or "", **size, **options)
        return image.png()

    try:
        # One picture holds the model thread for its whole denoising loop: beyond the queue
        # depth, refuse rather than stack up waiting threads.
        if state.images_in_flight > settings.INFERENCE_QUEUE_DEPTH:
            raise ModelBusy()
        state.images_in_flight += 1
        try:
            png = await asyncio.to_thread(work)  # blocking: under a second to minutes
        finally:
            state.images_in_flight -= 1
    except InferenceError as exc:
        _raise_api(exc, state.metrics, "/v1/images/generations", param="prompt")
    return {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(png).decode()}]}


# --- Models, health, metrics -------------------------------------------------------------------


async def list_models() -> dict[str, Any]:
    data = []
    for kind in KINDS:
        try:
            backend = await _backend(kind)
        except InferenceError:
            continue  # not loadable here: not offered
        entry = {"id": backend.model_version, "object": "model", "created": STARTED, "owned_by": "parley"}
        entry["kind"] = kind  # extension: which endpoint serves it
        if kind == "image":
            entry["meaningful"] = bool(getattr(backend, "meaningful", True))
        data.append(entry)
    return {"object": "list", "data": data}


def load_models() -> dict[str, str]:
    """Load every configured backend now (so no request pays for it); kind -> version or error."""
    loaded = {}
    for kind, (getter, _) in KINDS.items():
        started = time.perf_counter()
        try:
            loaded[kind] = getter().model_version
            log.info(
                "event=model_ready kind=%s version=%s seconds=%.1f",
                kind,
                loaded[kind],
                time.perf_counter() - started,
            )
        except Exception as exc:
            loaded[kind] = f"unavailable ({exc.__class__.__name__})"
            log.exception("event=model_unavailable kind=%s", kind)
    return loaded


def create_app() -> FastAPI:
    app = FastAPI(title="Parley inference", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics = Metrics()
    app.state.images_in_flight = 0
    app.add_middleware(Edge, metrics=metrics)

    v1 = APIRouter(prefix="/v1")
    v1.add_api_route("/models", list_models, methods=["GET"])
    v1.add_api_route("/chat/completions", chat_completions, methods=["POST"])
    v1.add_api_route("/embeddings", embeddings, methods=["POST"])
    v1.add_api_route("/images/generations", images_generations, methods=["POST"])
    app.include_router(v1)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else None
        return APIError(exc.status_code, str(exc.detail), code=kind, headers=exc.headers).response()

    @app.exception_handler(InferenceError)
    async def inference_error(request: Request, exc: InferenceError) -> JSONResponse:
        return APIError.from_inference(exc).response()

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; counted in the metrics as 499

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("event=inference_internal_error path=%s", request.url.path)
        return APIError(500, "Internal error.", type="server_error", code="internal_error").response()

    return app

"""Remote backends: any OpenAI-compatible server at INFERENCE_URL (ours, vLLM, TGI).

The product code cannot tell these from the local backends: same interfaces, same errors (a busy
server is ModelBusy, a prompt over its context is InputTooLong, an unreachable or model-less
server is ModelUnavailable), and the usage records name the server's model version. Against
Parley's own server (`manage.py inference_server`) those are the same registry keys the local
backends report.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
from django.conf import settings
from PIL import Image

from inference.base import (
    ChatMessage,
    Embedder,
    GeneratedImage,
    Generation,
    GenerationParams,
    ImageGenerator,
    ImageProgress,
    ImageSpec,
    InferenceError,
    InputTooLong,
    ModelBusy,
    ModelUnavailable,
    TextGenerator,
    Usage,
)

log = logging.getLogger(__name__)

EMBED_BATCH = 128  # texts per request: ~130 KB of passages, well under a server's body limit
_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "too long", "too many tokens")


class RemoteModel:
    """What the three remote backends share: the server's address and key, the model id to ask
    for (`model`, else the one the server lists for our kind, else the setting `model_setting`
    names), a client for blocking requests, and the mapping of HTTP failures to the inference
    layer's errors."""

    kind = ""
    model_setting = ""  # the setting naming our kind's model: CHAT_MODEL, EMBEDDING_MODEL...

    def __init__(
        self, base_url: str | None = None, model: str | None = None, api_key: str | None = None
    ) -> None:
        self.base_url = (base_url or settings.INFERENCE_URL).rstrip("/")
        if not self.base_url:
            raise ModelUnavailable("INFERENCE_URL is not set.")
        key = settings.INFERENCE_API_KEY if api_key is None else api_key
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = httpx.Timeout(settings.INFERENCE_REQUEST_TIMEOUT, connect=10)
        self.client = httpx.Client(timeout=self.timeout)
        self.model_info: dict[str, Any] = {}
        self.model = model or self._discover(getattr(settings, self.model_setting))
        self.model_version = self.version_of(self.model)
        self.connected()

    def connected(self) -> None:
        """What a kind learns from the server once its model is known (the last step of __init__)."""

    def _discover(self, configured: str) -> str:
        """The server's model of our kind: the configured name if the server lists it, else the
        one Parley's server marks with this kind, else the only one (vLLM serves one), else the
        configured name as is (the server may accept an alias it does not list)."""
        try:
            response = httpx.get(f"{self.base_url}/v1/models", headers=self.headers, timeout=10)
            listed = response.json()["data"] if response.status_code == 200 else []
            models = [m for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            log.warning("event=remote_models_unlisted url=%s kind=%s", self.base_url, self.kind)
            return configured
        chosen = (
            next((m for m in models if m["id"] == configured), None)
            or next((m for m in models if m.get("kind") == self.kind), None)
            or next((m for m in models if m["id"].startswith(f"{self.kind}:")), None)
            or (models[0] if len(models) == 1 else None)
        )
        if chosen is None:
            return configured
        self.model_info = chosen
        model_id: str = chosen["id"]
        return model_id

    def version_of(self, model: str) -> str:
        """The registry key for a model id: Parley's server answers with keys already."""
        return model if model.startswith(f"{self.kind}:") else f"{self.kind}:{model}@remote"

    def unreachable(self, exc: httpx.HTTPError) -> InferenceError:
        if isinstance(exc, httpx.TimeoutException):
            return InferenceError("The inference server did not answer in time.", code="timeout")
        return ModelUnavailable(
            f"The inference server at {self.base_url} is unreachable ({exc.__class__.__name__})."
        )

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """A blocking POST to the server; its failures as the inference layer's errors."""
        try:
            response = self.client.post(f"{self.base_url}{path}", headers=self.headers, json=body)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        _raise_for(response)
        return response


def error_for(status: int, payload: Any) -> InferenceError:
    """The inference error for an error answer (an OpenAI body, TGI's `{"error": "..."}`, or none)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    message, code = None, None
    if isinstance(error, dict):
        message, code = error.get("message"), error.get("code")
    elif isinstance(error, str):
        message = error
    message = message if isinstance(message, str) and message else f"inference server answered HTTP {status}"
    if code == "context_length_exceeded" or (
        status in (400, 413, 422) and any(hint in message.lower() for hint in _CONTEXT_HINTS)
    ):
        return InputTooLong(message)
    if status == 429 or code in ("busy", "rate_limit_exceeded"):
        return ModelBusy()  # the product shows ModelBusy's own message to users
    if status == 503:
        return ModelUnavailable(message) if code == "model_unavailable" else ModelBusy()
    if status == 404:
        return ModelUnavailable(message)
    if 400 <= status < 500:
        return InferenceError(message, code=code if isinstance(code, str) and code else "invalid_request")
    return InferenceError(message, code="inference_error")


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        payload = response.json()
    except ValueError:
        payload = None
    raise error_for(response.status_code, payload)


class RemoteTextGenerator(RemoteModel, TextGenerator):
    kind = "chat"
    model_setting = "CHAT_MODEL"

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        generation = Generation()
        generation.deltas = self._run(messages, params, generation)
        return generation

    def _body(self, messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        # vLLM's extensions, which Parley's server shares; sent only when they change anything.
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if getattr(params, "ignore_eos", False):
            body["ignore_eos"] = True
        return body

    async def _run(
        self, messages: list[ChatMessage], params: GenerationParams, generation: Generation
    ) -> AsyncIterator[str]:
        started = time.perf_counter()
        first: float | None = None
        usage: dict[str, Any] = {}
        finish, count, version = "cancelled", 0, self.model_version
        try:
            # One client per generation: the caller may run each on its own event loop (Celery).
            # Leaving this block (the caller closed the generation) closes the connection, which
            # makes the server cancel the generation and free its slot.
            async with (
                httpx.AsyncClient(timeout=self.timeout, headers=self.headers) as client,
                client.stream(
                    "POST", f"{self.base_url}/v1/chat/completions", json=self._body(messages, params)
                ) as response,
            ):
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise InferenceError("The inference server sent a malformed event.") from exc
                    if chunk.get("error"):
                        raise error_for(500, chunk)
                    usage = chunk.get("usage") or usage
                    version = self.version_of(chunk["model"]) if chunk.get("model") else version
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            count += 1
                            first = time.perf_counter() - started if first is None else first
                            yield text
                if finish == "cancelled":  # [DONE] without a finish reason
                    finish = "stop"
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        finally:
            self.model_version = version
            generation.usage = Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", count)),
                model_version=version,
                finish_reason=finish,
                seconds_to_first_token=first,
                seconds_total=time.perf_counter() - started,
            )


class RemoteEmbedder(RemoteModel, Embedder):
    kind = "embedding"
    model_setting = "EMBEDDING_MODEL"

    def connected(self) -> None:
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        parts = [self._embed_batch(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
        vectors = np.concatenate(parts).astype(np.float32)  # (n, dim)
        # Re-normalise: not every OpenAI-compatible server returns unit vectors.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        payload = self.post("/v1/embeddings", body).json()
        if payload.get("model"):
            self.model_version = self.version_of(payload["model"])
        rows = sorted(payload["data"], key=lambda row: row["index"])
        if len(rows) != len(texts):
            raise InferenceError(f"The inference server returned {len(rows)} vectors for {len(texts)} texts.")
        return np.asarray([row["embedding"] for row in rows], dtype=np.float32)  # (b, dim)


class RemoteImageGenerator(RemoteModel, ImageGenerator):
    """Images from `/v1/images/generations` (b64_json). The PNG's parley:* text chunks carry the
    facts that made it (prompt, seed, model version...), which become the GeneratedImage's
    metadata, exactly as the local generator's."""

    kind = "image"
    model_setting = "IMAGE_MODEL"

    def connected(self) -> None:
        self.meaningful = bool(self.model_info.get("meaningful", True))

    def render(self, spec: ImageSpec, progress: ImageProgress | None) -> GeneratedImage:
        # progress is never called: the OpenAI images API reports no steps (one request).
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": spec.prompt,
            "n": 1,
            "size": f"{spec.width}x{spec.height}",
            "response_format": "b64_json",
        }
        extras = {
            "negative_prompt": spec.negative_prompt or None,
            "steps": spec.steps,
            "guidance": spec.guidance,
            "seed": spec.seed,
        }
        body.update({key: value for key, value in extras.items() if value is not None})
        response = self.post("/v1/images/generations", body)
        try:
            image = Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"])))
            image.load()
        except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
            raise InferenceError("The inference server sent no readable image.") from exc
        text = getattr(image, "text", {}) or {}
        metadata = {key[len("parley:") :]: value for key, value in text.items() if key.startswith("parley:")}
        if not metadata:  # another server: record what we asked for
            metadata = {
                "prompt": spec.prompt,
                "negative_prompt": spec.negative_prompt,
                "model_version": self.model_version,
                "width": str(image.width),
                "height": str(image.height),
                **{
                    key: str(value)
                    for key, value in extras.items()
                    if key != "negative_prompt" and value is not None
                },
            }
        if "meaningful" in metadata:
            self.meaningful = metadata["meaningful"] == "true"
        version = metadata.get("model_version", self.model_version)
        return GeneratedImage(image=image, metadata=metadata, model_version=version)

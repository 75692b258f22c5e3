"""Remote backends: any OpenAI-compatible server at INFERENCE_URL (ours, vLLM, TGI).

The product code cannot tell these from the local backends: same interfaces, same errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import numpy as np
from django.conf import settings

from inference.base import (
    ChatMessage,
    Embedder,
    Generation,
    GenerationParams,
    InferenceError,
    ModelBusy,
    TextGenerator,
    Usage,
)


def _headers() -> dict[str, str]:
    key = settings.INFERENCE_API_KEY
    return {"Authorization": f"Bearer {key}"} if key else {}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    if response.status_code in (429, 503):
        raise ModelBusy()
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = f"inference server answered HTTP {response.status_code}"
    raise InferenceError(message, code="inference_error")


class RemoteTextGenerator(TextGenerator):
    def __init__(self, base_url: str | None = None, model: str | None = None) -> None:
        self.base_url = (base_url or settings.INFERENCE_URL).rstrip("/")
        self.model = model or settings.CHAT_MODEL
        self.model_version = f"chat:{self.model}@remote"

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        generation = Generation()
        generation.deltas = self._run(messages, params, generation)
        return generation

    async def _run(
        self, messages: list[ChatMessage], params: GenerationParams, generation: Generation
    ) -> AsyncIterator[str]:
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream_options": {"include_usage": True},
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        started = time.perf_counter()
        first = None
        usage: dict = {}
        finish = "stop"
        count = 0
        timeout = httpx.Timeout(settings.INFERENCE_REQUEST_TIMEOUT, connect=10)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream(
                    "POST", f"{self.base_url}/v1/chat/completions", json=body, headers=_headers()
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
                    chunk = json.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices", []):
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            count += 1
                            first = first if first is not None else time.perf_counter() - started
                            yield text
                    if chunk.get("model"):
                        self.model_version = f"chat:{chunk['model']}@remote"
        except httpx.HTTPError as exc:
            raise InferenceError(f"inference server unreachable: {exc.__class__.__name__}") from exc
        finally:
            generation.usage = Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", count)),
                model_version=self.model_version,
                finish_reason=finish,
                seconds_to_first_token=first,
                seconds_total=time.perf_counter() - started,
            )


class RemoteEmbedder(Embedder):
    def __init__(self, base_url: str | None = None, model: str | None = None) -> None:
        self.base_url = (base_url or settings.INFERENCE_URL).rstrip("/")
        self.model = model or settings.EMBEDDING_MODEL
        self.model_version = f"embedding:{self.model}@remote"
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        try:
            response = httpx.post(
                f"{self.base_url}/v1/embeddings",
                headers=_headers(),
                json={"model": self.model, "input": list(texts)},
                timeout=settings.INFERENCE_REQUEST_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            raise InferenceError(f"inference server unreachable: {exc.__class__.__name__}") from exc
        _raise_for(response)
        rows = sorted(response.json()["data"], key=lambda row: row["index"])
        vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        # Re-normalise: not every OpenAI-compatible server returns unit vectors.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

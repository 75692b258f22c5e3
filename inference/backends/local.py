"""In-process backends: the models live in this Python process (CPU or CUDA)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from django.conf import settings

from inference.base import (
    ChatMessage,
    Embedder,
    Generation,
    GenerationParams,
    ModelBusy,
    TextGenerator,
    Usage,
)
from inference.prepare import embedding_model_path, prepare_embedding_model, read_manifest
from inference.runtime import model_thread

log = logging.getLogger(__name__)


class StopStringFilter:
    """Holds back just enough streamed text to cut the answer at the first stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was reached)."""
        if not self.stops:
            return text, False
        self.buffer += text
        cut = min((i for i in (self.buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.buffer = self.buffer[:cut], ""
            return out, True
        if self.hold and len(self.buffer) > self.hold:
            out, self.buffer = self.buffer[: -self.hold], self.buffer[-self.hold :]
            return out, False
        if not self.hold:
            out, self.buffer = self.buffer, ""
            return out, False
        return "", False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class LocalTextGenerator(TextGenerator):
    """SmolLM2 (or any causal LM folder) in this process, driven step by step on the model thread."""

    def __init__(self, model_dir: str | None = None) -> None:
        from inference.engine import Engine  # torch loads only when a generator is built

        model_dir = model_dir or settings.CHAT_MODEL
        manifest = read_manifest(Path(model_dir))
        self.engine = model_thread().call(
            Engine,
            model_dir,
            device=settings.INFERENCE_DEVICE,
            dtype=settings.CHAT_DTYPE,
            max_input_tokens=settings.INFERENCE_MAX_INPUT_TOKENS,
        )
        self.model_version = manifest.key if manifest else f"chat:{model_dir}"
        self._active = 0
        self._active_lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        generation = Generation()
        generation.deltas = self._run(list(messages), params, generation)
        return generation

    def _try_acquire(self) -> bool:
        with self._active_lock:
            if self._active >= settings.INFERENCE_MAX_CONCURRENT:
                return False
            self._active += 1
            return True

    def _release(self) -> None:
        with self._active_lock:
            self._active -= 1

    async def _acquire_slot(self) -> None:
        # Polling keeps this usable from any event loop (server, tests, Celery's asyncio.run);
        # the batching engine of the inference-layer issue replaces it with a real queue.
        deadline = time.monotonic() + settings.INFERENCE_QUEUE_TIMEOUT
        while not self._try_acquire():
            if time.monotonic() >= deadline:
                raise ModelBusy()
            await asyncio.sleep(0.05)

    async def _run(
        self, messages: list[ChatMessage], params: GenerationParams, generation: Generation
    ) -> AsyncIterator[str]:
        started = time.perf_counter()
        prompt_ids = self.engine.encode_chat(messages)
        self.engine.check_prompt(prompt_ids)  # refuse at once rather than after queueing
        await self._acquire_slot()
        max_tokens = min(params.max_tokens, settings.INFERENCE_MAX_NEW_TOKENS)
        steps = self.engine.generate(prompt_ids, replace(params, max_tokens=max_tokens))
        worker = model_thread()
        stop_filter = StopStringFilter(params.stop)
        tokens, first, finish = 0, None, "cancelled"
        try:
            while True:
                event = await asyncio.wrap_future(worker.submit(next, steps, None))
                if event is None:
                    finish = "stop" if tokens < max_tokens else "length"
                    break
                tokens += 1
                if first is None:
                    first = time.perf_counter() - started
                text, stopped = stop_filter.feed(event.text)
                if text:
                    yield text
                if stopped:
                    finish = "stop"
                    break
                if time.perf_counter() - started > settings.INFERENCE_REQUEST_TIMEOUT:
                    finish = "length"
                    break
            if finish != "stop" or not stop_filter.stops:
                tail = stop_filter.flush()
                if tail:
                    yield tail
        finally:
            # Closing on the model thread frees the KV cache there, after any step in flight.
            worker.submit(steps.close)
            self._release()
            generation.usage = Usage(
                prompt_tokens=len(prompt_ids),
                completion_tokens=tokens,
                model_version=self.model_version,
                finish_reason=finish,
                seconds_to_first_token=first,
                seconds_total=time.perf_counter() - started,
            )


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (or any sentence-transformers folder) in this process."""

    def __init__(self, spec: str | None = None, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        from inference.engine import resolve_device

        spec = spec or settings.EMBEDDING_MODEL
        prepared = prepare_embedding_model(spec)
        device = resolve_device(settings.INFERENCE_DEVICE)
        self.model = model_thread().call(
            lambda: SentenceTransformer(
                str(embedding_model_path(spec)), device=str(device), local_files_only=True
            )
        )
        self.model_version = prepared.key
        self.dim = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model_thread().call(
            lambda: self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)

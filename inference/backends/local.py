"""In-process backends: the models live in this Python process (CPU or CUDA)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings
from sentence_transformers import SentenceTransformer

from inference.base import (
    ChatMessage,
    Embedder,
    Generation,
    GenerationParams,
    InferenceError,
    ModelUnavailable,
    TextGenerator,
    Usage,
)
from inference.engine.decoding import IncrementalDecoder
from inference.engine.device import resolve_device
from inference.engine.scheduler import Engine
from inference.prepare import PreparedModel, embedding_model_path, prepare_embedding_model, read_manifest
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
    """SmolLM2 (or any Llama-family model folder) in this process: requests join the engine's
    running batch (inference/engine/), whose steps run on the model thread one at a time, so
    embedding and index work interleave with decoding at token boundaries."""

    def __init__(self, model_dir: str | None = None, adapter_dir: str | None = None) -> None:
        model_dir = model_dir or settings.CHAT_MODEL
        manifest = read_manifest(Path(model_dir))
        self.engine = model_thread().call(
            Engine,
            model_dir,
            device=settings.INFERENCE_DEVICE,
            dtype=settings.CHAT_DTYPE,
            weights=settings.CHAT_WEIGHTS,
            max_input_tokens=settings.INFERENCE_MAX_INPUT_TOKENS,
            max_total_tokens=settings.INFERENCE_MAX_TOTAL_TOKENS,
            max_new_tokens=settings.INFERENCE_MAX_NEW_TOKENS,
            slots=settings.INFERENCE_MAX_CONCURRENT,
            queue_depth=settings.INFERENCE_QUEUE_DEPTH,
            queue_timeout=settings.INFERENCE_QUEUE_TIMEOUT,
            request_timeout=settings.INFERENCE_REQUEST_TIMEOUT,
            prefill_chunk=settings.INFERENCE_PREFILL_CHUNK,
            prefill_budget=settings.INFERENCE_PREFILL_BUDGET,
            prefix_cache_tokens=settings.INFERENCE_PREFIX_CACHE_TOKENS,
            adapter_dir=adapter_dir,
        )
        # A fine-tuned version's key is set by whoever builds it from the registry (services).
        self.model_version = manifest.key if manifest else f"chat:{model_dir}"
        self._pump_lock = threading.Lock()
        self._pumping = False

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    @property
    def active_requests(self) -> int:
        """Requests holding a row or waiting for one (cancelled ones no longer count)."""
        return self.engine.load

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        generation = Generation()
        generation.deltas = self._run(list(messages), params, generation)
        return generation

    # --- Driving the engine -----------------------------------------------------------------------

    def _wake(self) -> None:
        """Make sure engine steps are being run on the model thread."""
        with self._pump_lock:
            if self._pumping:
                return
            self._pumping = True
        model_thread().submit(self._pump)

    def _pump(self) -> None:
        """One engine step, then queue the next behind whatever other model work arrived."""
        try:
            more = self.engine.step()
        except Exception as exc:
            log.exception("event=engine_step_failed")
            self.engine.fail_all(InferenceError(f"The model failed ({exc.__class__.__name__})."))
            more = False
        with self._pump_lock:
            if not (more or self.engine.has_work()):
                self._pumping = False
                return
        model_thread().submit(self._pump)

    async def _run(
        self, messages: list[ChatMessage], params: GenerationParams, generation: Generation
    ) -> AsyncIterator[str]:
        started = time.perf_counter()
        engine = self.engine
        prompt_ids = engine.encode_chat(messages)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def listener(kind: str, payload: Any) -> None:  # called on the model thread
            loop.call_soon_threadsafe(events.put_nowait, (kind, payload))

        prefix_len = engine.shared_prefix_len(messages, prompt_ids)
        request = engine.submit(prompt_ids, params, listener, prefix_len=prefix_len)  # may raise at once
        self._wake()
        decoder = IncrementalDecoder(engine.tokenizer)
        stop_filter = StopStringFilter(params.stop)
        first, finish = None, "cancelled"
        try:
            while True:
                kind, payload = await events.get()
                if kind == "error":
                    raise payload
                if kind == "end":
                    finish = payload
                    break
                if first is None:
                    first = time.perf_counter() - started
                text, stopped = stop_filter.feed(decoder.push(payload))
                if text:
                    yield text
                if stopped:
                    finish = "stop"
                    break
            if finish != "stop" or not stop_filter.stops:
                tail = stop_filter.flush()
                if tail:
                    yield tail
        finally:
            engine.cancel(request)  # no-op once it has ended; frees the row at the next step
            generation.usage = Usage(
                prompt_tokens=len(prompt_ids),
                completion_tokens=request.produced,
                model_version=self.model_version,
                finish_reason=finish,
                seconds_to_first_token=first,
                seconds_total=time.perf_counter() - started,
            )


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (or any sentence-transformers folder) in this process.

    Backends (EMBEDDING_BACKEND): "torch" runs sentence-transformers as is; "openvino" runs the
    same weights through OpenVINO in float32, converted once from the packaged model folder and
    cached under MODELS_DIR; "auto" (the default) picks OpenVINO on CPU when the package is
    installed. Measured in one run of benchmarks/retrieval_bench.py (RESULTS.md, "Knowledge base:
    index and ingestion speed"), 3,946 passages, cores shared with another test run: OpenVINO
    66 passages/s, torch 37/s, bare sentence-transformers encode 18/s; vectors equal torch's
    (cosine 1.0000). OpenVINO's CPU time per passage stays ~30-35 ms when other processes compete
    for the cores, where torch's OpenMP pool went from ~40 to 77-98 ms. sentence-transformers' own
    ONNX/OpenVINO backends need optimum, whose releases pin transformers < 5 (we run 5.x), hence
    the direct conversion. Tried and dropped: bfloat16 and float16 (0.7-0.9x, no AMX here) and
    int8 dynamic quantisation (cosine 0.988 against float32, below our 0.99 bar).

    batch_size (EMBEDDING_BATCH_SIZE, default 16): texts are sorted by length and embedded in
    batches of this size. Smaller batches pad less and stay in cache: 8-16 ran ~1.3-1.5x faster
    than 64 with either backend; each batch is one model-thread call, so chat decoding steps
    interleave with a long embedding job instead of waiting for all of it.
    """

    PROBES = (
        "How do I reset my router to factory settings?",
        "Refunds are paid back to the original payment method within 5 to 10 working days.",
        "Öffnungszeiten: Montag bis Freitag, 9 bis 17 Uhr.",
    )

    def __init__(
        self, spec: str | None = None, batch_size: int | None = None, backend: str | None = None
    ) -> None:
        spec = spec or settings.EMBEDDING_MODEL
        prepared = prepare_embedding_model(spec)
        device = resolve_device(settings.INFERENCE_DEVICE)
        self.model = model_thread().call(
            lambda: SentenceTransformer(
                str(embedding_model_path(spec)), device=str(device), local_files_only=True
            )
        )
        dim = (
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        if dim is None:
            raise ModelUnavailable(f"The embedding model {spec!r} gives vectors of no fixed size.")
        self.dim = int(dim)
        self.batch_size = int(batch_size or settings.EMBEDDING_BATCH_SIZE)
        choice = backend or settings.EMBEDDING_BACKEND
        if choice not in ("auto", "torch", "openvino"):
            raise ValueError(f"EMBEDDING_BACKEND must be auto, torch or openvino, not {choice!r}")
        self.backend = "torch"
        self._openvino: Any = None  # an OpenVINO infer request, when that backend is in use
        if choice != "torch" and device.type == "cpu":
            try:
                self._openvino = model_thread().call(self._load_openvino, prepared)
                self.backend = "openvino"
            except ImportError:
                if choice == "openvino":
                    raise
            except Exception:
                if choice == "openvino":
                    raise
                log.exception("event=embedder_openvino_unavailable fallback=torch")
        # The version key names the backend whenever the numbers may differ from the reference
        # (torch, float32), so stored vectors can tell which path made them.
        self.model_version = prepared.key if self.backend == "torch" else f"{prepared.key}+{self.backend}"
        log.info("event=embedder_ready backend=%s dim=%d batch=%d", self.backend, self.dim, self.batch_size)

    # --- OpenVINO -------------------------------------------------------------------------------

    def _mean_pooled(self) -> bool:
        """Whether the pipeline is Transformer -> mean Pooling [-> Normalize], the one we convert."""
        names = [type(module).__name__ for module in self.model]
        pooling = self.model[1] if len(names) > 1 else None
        mean = getattr(pooling, "pooling_mode", None) == "mean" or getattr(
            pooling, "pooling_mode_mean_tokens", False
        )
        return names[:2] == ["Transformer", "Pooling"] and set(names[2:]) <= {"Normalize"} and bool(mean)

    def _load_openvino(self, prepared: PreparedModel) -> Any:
        """Compile the cached OpenVINO model (converting it first if needed); on the model thread."""
        # Imported here: openvino is optional, and its ImportError is what makes "auto" fall back
        # to torch (the constructor catches it).
        import openvino as ov

        if not self._mean_pooled():
            raise RuntimeError("only Transformer + mean pooling models are converted to OpenVINO")
        version = ov.__version__.split("-")[0]
        folder = settings.MODELS_DIR / "openvino" / f"{prepared.name}-{prepared.sha256[:12]}-ov{version}"
        if not (folder / "model.xml").exists():
            self._convert_openvino(folder)
        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(folder / "model.xml")),
            "CPU",
            {
                # OpenVINO would pick bfloat16 on CPUs with AVX512-BF16: slower here and not equal.
                "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            },
        )
        request = compiled.create_infer_request()
        reference = self.model.encode(
            list(self.PROBES), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        converted = np.array(request.infer(self._tokenize(list(self.PROBES)))[0], dtype=np.float32)
        converted /= np.linalg.norm(converted, axis=1, keepdims=True)  # (3, dim)
        agreement = float(np.min(np.sum(reference * converted, axis=1)))
        if agreement < 0.999:
            raise RuntimeError(f"OpenVINO vectors differ from torch's (cosine {agreement:.4f})")
        return request

    def _convert_openvino(self, folder: Path) -> None:
        """Trace the transformer plus mean pooling and save it as OpenVINO IR: local files only,
        written beside the target and renamed into place, so a concurrent or killed conversion
        never leaves half a model."""
        import openvino as ov  # optional: see _load_openvino

        started = time.perf_counter()
        example = dict(self._tokenize(["a short example", "a somewhat longer example sentence"]))
        names = ("input_ids", "attention_mask", "token_type_ids")
        if set(example) != set(names):
            raise RuntimeError(f"tokenizer inputs {sorted(example)} are not BERT's")
        transformer: Any = self.model[0]  # sentence-transformers' Transformer module
        module = _MeanPooled(transformer.auto_model).eval()
        with torch.inference_mode():
            converted = ov.convert_model(
                module,
                example_input={k: torch.from_numpy(example[k]) for k in names},
                input=[(k, [-1, -1], ov.Type.i64) for k in names],
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            ov.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
            try:
                tmp.rename(folder)
            except OSError:  # another process finished first: keep its copy
                if not (folder / "model.xml").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("event=embedder_converted backend=openvino seconds=%.1f", time.perf_counter() - started)

    def _tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        encoded = self.model.tokenizer(
            [t.strip() for t in texts],  # as sentence-transformers' Transformer.tokenize does
            padding=True,
            truncation=True,
            max_length=self.model.max_seq_length,
            return_tensors="np",
        )
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}  # each (B, T)

    # --- Embedding ------------------------------------------------------------------------------

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised. Cost: ~15-20 ms per 130-token passage on 2 cores."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        if not texts:
            return out
        # Longest first, as sentence-transformers does: batches of similar length pad little.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = [texts[i] for i in rows]
            if self._openvino is not None:
                inputs = self._tokenize(batch)  # on this thread: the model thread only runs the model
                out[rows] = model_thread().call(self._infer_openvino, inputs)
            else:
                out[rows] = model_thread().call(self._encode_torch, batch)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)

    def _encode_torch(self, batch: list[str]) -> np.ndarray:
        return self.model.encode(
            batch,
            batch_size=len(batch),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )  # (b, dim)

    def _infer_openvino(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(self._openvino.infer(inputs)[0], dtype=np.float32)  # (b, dim), copied out


class _MeanPooled(torch.nn.Module):
    """A BERT-style transformer plus mean pooling over the attention mask, as one traceable
    module: what LocalEmbedder converts to OpenVINO (normalisation is done after)."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # (B, T, C)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled: torch.Tensor = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, C)
        return pooled

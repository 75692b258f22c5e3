"""The scheduler: `Engine` owns the model and the running batch, admits requests into KV cache
rows, cuts prompts into prefill chunks, runs one decode step for every running request, picks
tokens (greedy, sampled, repetition penalty) and ends requests (stop, length, cancel, timeout).
The package docstring (inference/engine/__init__.py) explains the design; forward.py computes."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from inference.base import (
    ChatMessage,
    GenerationParams,
    InferenceError,
    InputTooLong,
    ModelBusy,
    ModelUnavailable,
)
from inference.engine.device import resolve_device, resolve_dtype, resolve_weights
from inference.engine.forward import LlamaForward, Lora, SavedPrefix
from inference.engine.loading import load_causal_lm

log = logging.getLogger(__name__)

# Events a request receives, in order: ("token", id) many, then ("end", finish_reason) or
# ("error", InferenceError). finish_reason: "stop" (end of sequence), "length" (max tokens, the
# row's capacity, or the per-request time limit).
Listener = Callable[[str, Any], None]


@dataclass(eq=False)
class Request:
    prompt_ids: list[int]
    params: GenerationParams
    max_new: int
    listener: Listener
    prefix_len: int = 0  # leading prompt tokens whose keys/values may be shared (Engine.prefixes)
    submitted: float = field(default_factory=time.monotonic)
    slot: int = -1
    prefilled: int = 0  # prompt tokens already in the cache
    produced: int = 0
    length: int = 0  # tokens in the cache row
    next_id: int = -1  # the token to feed at the next decode step
    started: float = 0.0  # when it got a row
    generator: torch.Generator | None = None
    cancelled: bool = False
    finished: bool = False
    counted: bool = True  # counts against slots + queue depth (Engine.load)


class Engine:
    """Owns the model and the running batch. Thread contract: `submit` and `cancel` may be called
    from any thread; `step` only from the one thread that runs the model (inference/runtime.py)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        weights: str = "auto",
        max_input_tokens: int = 1536,
        max_total_tokens: int = 2048,
        max_new_tokens: int = 512,
        slots: int = 8,
        queue_depth: int = 32,
        queue_timeout: float = 30.0,
        request_timeout: float = 120.0,
        prefill_chunk: int = 256,
        prefill_budget: int = 512,
        prefix_cache_tokens: int = 4096,
        adapter_dir: str | Path | None = None,
    ) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").exists():
            raise ModelUnavailable(f"No chat model at {model_dir}. Run `python manage.py prepare_models`.")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.weights = resolve_weights(weights, self.device)
        started = time.perf_counter()
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(model_dir)
        lora: Lora | None = {} if self.weights != "bf16" else None
        self.model = load_causal_lm(
            model_dir, device=self.device, dtype=self.dtype, adapter_dir=adapter_dir, lora=lora
        )
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.capacity = min(max_total_tokens, self.context_length)
        self.max_input_tokens = min(max_input_tokens, self.capacity - 1)
        self.max_new_tokens = max_new_tokens
        self.slots = slots
        self.queue_depth = queue_depth
        self.queue_timeout = queue_timeout
        self.request_timeout = request_timeout
        self.prefill_chunk = prefill_chunk
        # Prompt tokens computed per step, in whole chunks (at least one): running requests wait
        # about this many tokens' prefill time for their next token while others are admitted.
        self.prefill_budget = prefill_budget
        # Keys/values of shared prompt prefixes (a leading system message), least recently used
        # first: a hit skips prefilling them. Chunks are cut at the prefix's end whether or not
        # it hits, so a request's numbers, and its greedy output, are the same either way.
        self.prefix_cache_tokens = prefix_cache_tokens  # bound on all cached prefixes together
        self.prefixes: OrderedDict[tuple[int, ...], SavedPrefix] = OrderedDict()
        self._system_tokens = functools.lru_cache(maxsize=64)(self._encode_system)
        self.prefix_hits = 0
        self.prefix_misses = 0
        self.stop_ids = self._stop_token_ids()
        self.forward = LlamaForward(
            self.model, slots=slots, capacity=self.capacity, weights=self.weights, lora=lora
        )
        vocab = self.model.config.vocab_size
        # Tokens each row has produced, for the repetition penalty (prompt tokens are not
        # penalised: a grounded answer should copy facts from its sources).
        rows = self.forward.rows_allocated
        self.seen = torch.zeros(rows, vocab, dtype=torch.bool, device=self.device)  # (R, V)
        self.penalty = torch.ones(rows, 1, device=self.device)  # (R, 1)
        self._lock = threading.Lock()
        self.waiting: deque[Request] = deque()
        self.prefilling: deque[Request] = deque()
        self.running: list[Request] = []
        self.free_slots = list(range(slots))
        self.load = 0  # requests waiting or holding a row, not counting cancelled ones
        log.info(
            "event=model_loaded path=%s adapter=%s device=%s dtype=%s weights=%s slots=%d capacity=%d"
            " seconds=%.2f",
            model_dir,
            adapter_dir or "-",
            self.device,
            self.dtype,
            self.weights,
            slots,
            self.capacity,
            time.perf_counter() - started,
        )

    def _stop_token_ids(self) -> set[int]:
        ids = set()
        for token in (self.tokenizer.eos_token, "<|im_end|>", "<|endoftext|>"):
            if token is None:
                continue
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id:
                ids.add(token_id)
        return ids

    # --- Requests (any thread) ------------------------------------------------------------------

    def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return self._encode_template(list(messages), add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def check_prompt(self, prompt_ids: list[int]) -> None:
        if len(prompt_ids) > self.max_input_tokens:
            raise InputTooLong(
                f"The prompt has {len(prompt_ids)} tokens; the limit is {self.max_input_tokens}."
            )
        if not prompt_ids:
            raise InputTooLong("The prompt is empty.", code="empty_input")

    def shared_prefix_len(self, messages: Sequence[ChatMessage], prompt_ids: list[int]) -> int:
        """Tokens of a leading system message, when the prompt starts with exactly them and goes
        on after them: the part many requests share (instructions), worth caching."""
        if not messages or messages[0].get("role") != "system" or not self.prefix_cache_tokens:
            return 0
        prefix = self._system_tokens(messages[0]["content"])
        if len(prefix) < len(prompt_ids) and prompt_ids[: len(prefix)] == prefix:
            return len(prefix)
        return 0

    def _encode_system(self, content: str) -> list[int]:
        return self._encode_template([{"role": "system", "content": content}], add_generation_prompt=False)

    def _encode_template(self, messages: list[ChatMessage], *, add_generation_prompt: bool) -> list[int]:
        # Rendered to text, then encoded without special tokens: the template writes its own.
        text = self.tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in messages],
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
        assert isinstance(text, str)  # tokenize=False renders one conversation to one string
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def submit(
        self, prompt_ids: list[int], params: GenerationParams, listener: Listener, *, prefix_len: int = 0
    ) -> Request:
        """Queue a request; raises ModelBusy when the queue is full (never waits). The first
        `prefix_len` prompt tokens may come from, or go to, the prefix cache."""
        self.check_prompt(prompt_ids)
        max_new = max(0, min(params.max_tokens, self.max_new_tokens, self.capacity - len(prompt_ids)))
        if not 0 < prefix_len < len(prompt_ids) or prefix_len > self.prefix_cache_tokens:
            prefix_len = 0
        request = Request(list(prompt_ids), params, max_new, listener, prefix_len)
        with self._lock:
            if self.load >= self.slots + self.queue_depth:
                raise ModelBusy()
            self.load += 1
            self.waiting.append(request)
        return request

    def cancel(self, request: Request) -> None:
        """The client went away. Its place counts as free at once (a new request is accepted);
        the row itself is freed at the start of the next step, after any step in flight."""
        with self._lock:
            if not request.cancelled:
                request.cancelled = True
                self._unload(request)

    def _unload(self, request: Request) -> None:
        # Under self._lock: the request stops counting against the limits, exactly once.
        if request.counted:
            request.counted = False
            self.load -= 1

    def has_work(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running)

    # --- Scheduling (model thread) ----------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> bool:
        """One iteration: admissions, prompt chunks up to the prefill budget, one decode step.
        Returns has_work()."""
        self._drop_cancelled()
        self._admit()
        budget = self.prefill_budget
        while self.prefilling and budget > 0:
            budget -= self._prefill_some(self.prefilling[0])
        if self.running:
            self._decode()
        with self._lock:
            return self.has_work()

    def fail_all(self, error: InferenceError) -> None:
        """Something broke inside a step: every request ends with the error, rows are freed."""
        with self._lock:
            requests = [*self.waiting, *self.prefilling, *self.running]
            self.waiting.clear()
        for request in requests:
            self._finish(request, None)
            if not request.cancelled:
                request.listener("error", error)

    def _drop_cancelled(self) -> None:
        now = time.monotonic()
        with self._lock:
            for request in list(self.waiting):
                if request.cancelled:
                    self.waiting.remove(request)
                elif now - request.submitted > self.queue_timeout:
                    self.waiting.remove(request)
                    request.finished = True
                    self._unload(request)
                    request.listener("error", ModelBusy())
        for request in [*self.prefilling, *self.running]:
            if request.cancelled:
                self._finish(request, None)
            elif now - request.started > self.request_timeout:
                self._finish(request, "length")

    def _admit(self) -> None:
        admitted = []
        with self._lock:
            while self.waiting and self.free_slots:
                request = self.waiting.popleft()
                request.slot = self.free_slots.pop(0)  # lowest first: keeps rows compact
                request.started = time.monotonic()
                admitted.append(request)
        for request in admitted:
            if request.params.temperature > 0:
                request.generator = torch.Generator(device=self.device)
                seed = request.params.seed if request.params.seed is not None else time.time_ns()
                request.generator.manual_seed(int(seed))
        self.prefilling.extend(admitted)

    def _prefill_some(self, request: Request) -> int:
        """Prefill the request's next chunk; returns the tokens computed."""
        P = request.prefix_len
        if P and request.prefilled == 0:
            saved = self.prefixes.get(tuple(request.prompt_ids[:P]))
            if saved is not None:
                self.prefixes.move_to_end(tuple(request.prompt_ids[:P]))
                self.forward.load_prefix(request.slot, saved)
                request.prefilled = P
                self.prefix_hits += 1
            else:
                self.prefix_misses += 1
        # Alone or not, cached prefix or not, a prompt is cut at the same places (every
        # `prefill_chunk` tokens up to the prefix's end, then from there): the same numbers.
        start = request.prefilled
        end = min(P if start < P else len(request.prompt_ids), start + self.prefill_chunk)
        logits = self.forward.prefill(request.slot, request.prompt_ids[start:end], start)
        request.prefilled = end
        if end == P:
            self._store_prefix(request)
        if request.prefilled < len(request.prompt_ids):
            return end - start
        self.prefilling.popleft()
        request.length = len(request.prompt_ids)
        self.seen[request.slot] = False
        self.penalty[request.slot] = request.params.repetition_penalty
        if request.max_new == 0:
            self._finish(request, "length")
            return end - start
        token = int(self._pick(logits, [request])[0])  # (1, V) -> one id
        self.running.append(request)
        self._emit(request, token)
        return end - start

    def _store_prefix(self, request: Request) -> None:
        key = tuple(request.prompt_ids[: request.prefix_len])
        if key not in self.prefixes:
            self.prefixes[key] = self.forward.save_prefix(request.slot, request.prefix_len)
            while sum(len(k) for k in self.prefixes) > self.prefix_cache_tokens:
                self.prefixes.popitem(last=False)

    def _decode(self) -> None:
        # Rows [0, R): every running request's row, rounded up to the row quantum.
        highest = max(r.slot for r in self.running) + 1
        quantum = self.forward.row_quantum
        R = min(self.forward.rows_allocated, -(-highest // quantum) * quantum)
        ids = torch.zeros(R, dtype=torch.long)
        positions = torch.full((R,), self.capacity, dtype=torch.long)
        for request in self.running:
            ids[request.slot] = request.next_id
            positions[request.slot] = request.length
        width = max(r.length for r in self.running) + 1
        logits = self.forward.decode(ids.to(self.device), positions.to(self.device), width)  # (R, V)
        for request in self.running:
            request.length += 1
        rows = [r.slot for r in self.running]
        picked = self._pick(logits[rows], self.running)  # one host sync for the whole batch
        for request, token in zip(list(self.running), picked, strict=True):
            self._emit(request, int(token))

    def _pick(self, logits: torch.Tensor, requests: list[Request]) -> list[int]:
        """Next token per request. logits: (R, V) for `requests` in order."""
        rows = torch.tensor([r.slot for r in requests], device=self.device)
        if any(r.params.repetition_penalty != 1.0 for r in requests):
            # CTRL-style penalty on tokens the answer already used: tiny models loop otherwise.
            seen, penalty = self.seen[rows], self.penalty[rows]  # (R, V), (R, 1)
            penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
            logits = torch.where(seen, penalised, logits)
        chosen = logits.argmax(dim=-1)  # (R,)
        for i, request in enumerate(requests):
            if request.params.temperature > 0:
                chosen[i] = self._sample(logits[i : i + 1], request)
        self.seen[rows, chosen] = True
        return chosen.tolist()

    @staticmethod
    def _sample(logits: torch.Tensor, request: Request) -> torch.Tensor:
        # logits: (1, V)
        params = request.params
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
            keep = sorted_probs.cumsum(dim=-1) - sorted_probs < params.top_p
            choice = torch.multinomial(sorted_probs * keep, 1, generator=request.generator)  # (1, 1)
            return sorted_idx.gather(-1, choice).view(())
        return torch.multinomial(probs, 1, generator=request.generator).view(())

    def _emit(self, request: Request, token: int) -> None:
        if token in self.stop_ids and not request.params.ignore_eos:
            self._finish(request, "stop")
            return
        request.produced += 1
        request.next_id = token
        request.listener("token", token)
        if request.produced >= request.max_new or request.length >= self.capacity:
            self._finish(request, "length")

    def _finish(self, request: Request, reason: str | None) -> None:
        """Free the request's row; tell its listener unless it was cancelled (reason None)."""
        if request.finished:
            return
        request.finished = True
        if request in self.running:
            self.running.remove(request)
        if request in self.prefilling:
            self.prefilling.remove(request)
        with self._lock:
            self._unload(request)
            if request.slot >= 0:
                self.free_slots.append(request.slot)
                self.free_slots.sort()
        request.slot = -1
        if reason is not None:
            request.listener("end", reason)

"""The chat model engine: one causal LM, many requests decoded together (continuous batching).

It knows nothing of HTTP, websockets or event loops (inference/backends/local.py and
inference/server/ do that). The shape is vLLM's, shrunk to what a reader can hold in their head:

- A KV cache of `slots` rows, each `capacity` tokens long, allocated once per layer as
  (rows, kv_heads, capacity + 1, head_dim). A request owns one row from admission until it ends;
  its tokens sit at columns [0, length). Column `capacity` is scratch space that rows without a
  token to decode write to, so a step never disturbs a row that is being prefilled.
- `step()` is one scheduling iteration, run on the model thread: drop cancelled requests, admit
  waiting ones into free rows (lowest first), prefill prompt chunks of `prefill_chunk` tokens up
  to `prefill_budget` tokens (so running streams stall for that long at most), then ONE forward
  pass that decodes the next token of every running request. Requests join and leave at these
  token boundaries; a cancelled request's row is free at the next step.
- Prefix cache: the keys/values of a prompt's leading system message (the instructions every
  answer shares) are kept, and a request starting with the same tokens copies them instead of
  prefilling them. Prompts are always cut at the prefix's end, hit or miss, so the numbers match.
- The forward pass is written out here for the Llama family (Llama, Mistral, Qwen2: SmolLM2 is a
  Llama) over the Hugging Face modules' weights (a fine-tuned adapter must be merged into them
  first). Doing it ourselves rather than through `model(...)` gives per-row positions and write
  columns in one batched step, and drops the per-call mask building and cache bookkeeping of the
  generic path.
- Batch invariance: a request's greedy output is the same alone or batched (tests/test_batching.py
  checks it). A decode step runs the rows up to the highest one in use, rounded up to ROW_QUANTUM
  (4): measured on CPU, the kernels then give each row the same bits whatever the batch. bfloat16
  matmuls (oneDNN) are invariant as they are; float32 ones (MKL) only when taken 4 rows at a time
  (LlamaForward.row_linear). Decode is bound by reading the weights, so 8 rows cost little more
  than 1: that is why batching pays.

Why not transformers' own continuous batching (`ContinuousBatchingManager`, transformers 5.x: it
has add_request, cancel_request and per-request logits-processor arguments): it runs the model in
its own generation thread, while every torch and FAISS call of a Parley process must stay on the
one model thread (inference/runtime.py: a second thread using torch halved decode speed here), and
it makes no promise that a request's greedy output is independent of the batch around it. We did
not benchmark it against this engine.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import AutoModelForCausalLM, AutoTokenizer

from inference.base import GenerationParams, InferenceError, InputTooLong, ModelBusy, ModelUnavailable

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX). torch's own check
    (mkldnn bf16 support) is true for any AVX-512 CPU, where bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """bf16 on GPUs and on CPUs with native bf16 (3-4x the float32 matmul speed, measured);
    float32 on other CPUs, where bf16 measured slower (benchmarks/RESULTS.md, "dtype")."""
    if setting == "auto":
        if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        return torch.float32
    return getattr(torch, setting)


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without splitting UTF-8 characters.

    Decoding each new token alone breaks multi-token characters and loses the leading spaces
    that SentencePiece/BPE attach to word starts; decoding a short window of previous tokens and
    emitting only the new suffix (the approach of TGI and vLLM) avoids both.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self.tokenizer.decode(
            self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True
        )
        full = self.tokenizer.decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return full[len(prefix) :]
        return ""


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


# Decode steps run a multiple of this many rows, and on CPU their matmuls run per group of this
# many rows (LlamaForward.row_linear). Measured with MKL on the dev machines: a row's result is
# then bit-identical whatever the other rows and its position among them, and differs for other
# group sizes (remainder rows take another kernel); greedy output does not depend on who else is
# in the batch. bfloat16 matmuls alone would allow 1, but the decode attention's batched matmuls
# then are not invariant (measured: greedy text changed), so it holds for every dtype.
ROW_QUANTUM = 4


class LlamaForward:
    """The batched forward pass over a Llama-family model's weights and a slot KV cache.

    q/k/v and gate/up projections are fused into one matrix each (as vLLM does): three and two
    matmuls become one, with fewer Python calls per layer. The modules' own weights become views
    into the fused matrices, so `model.generate` still works on the same memory.
    """

    def __init__(self, model, *, slots: int, capacity: int) -> None:
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelUnavailable(
                f"The batching engine runs {SUPPORTED_MODEL_TYPES} models, not {config.model_type}."
            )
        inner = model.model
        self.layers = list(inner.layers)
        self.embed, self.norm, self.rotary, self.lm_head = (
            inner.embed_tokens,
            inner.norm,
            inner.rotary_emb,
            model.lm_head,
        )
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.hidden_act = F.silu if config.hidden_act == "silu" else None
        self.fused = [self._fuse(layer) for layer in self.layers]
        self.capacity = capacity
        self.rows_allocated = -(-slots // ROW_QUANTUM) * ROW_QUANTUM
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        shape = (self.rows_allocated, self.n_kv, capacity + 1, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.rows = torch.arange(self.rows_allocated, device=self.device)  # (R,)
        # float32 on CPU (MKL): the grouped layout is both faster and batch-invariant. bfloat16 on
        # CPU (oneDNN): F.linear is already both, measured. On CUDA one matmul over all rows is
        # what batching is for (cuBLAS promises no batch invariance either way).
        cpu_float32 = self.device.type == "cpu" and self.dtype == torch.float32
        self.decode_linear = self.row_linear if cpu_float32 else F.linear
        self.columns = torch.arange(capacity + 1, device=self.device)  # (C+1,)

    def _fuse(self, layer) -> tuple:
        """(qkv weight, qkv bias or None, q/k/v sizes, gate_up weight, intermediate size)."""
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        sizes = [p.weight.shape[0] for p in projections]
        qkv = torch.cat([p.weight.data for p in projections])  # (Hq*D + 2*Hkv*D, C)
        bias = None
        if attn.q_proj.bias is not None:
            bias = torch.cat([p.bias.data for p in projections])
        offset = 0
        for p, size in zip(projections, sizes, strict=True):
            p.weight.data = qkv[offset : offset + size]
            if bias is not None:
                p.bias.data = bias[offset : offset + size]
            offset += size
        inter = mlp.gate_proj.weight.shape[0]
        gate_up = torch.cat([mlp.gate_proj.weight.data, mlp.up_proj.weight.data])  # (2*I, C)
        mlp.gate_proj.weight.data, mlp.up_proj.weight.data = gate_up[:inter], gate_up[inter:]
        return qkv, bias, sizes, gate_up, inter

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: (B, H, T, D); cos/sin: (B, 1, T, D). RoPE as in transformers' apply_rotary_pos_emb.
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _layer(self, i: int, x, cos, sin, write, attend, linear=F.linear) -> torch.Tensor:
        """One decoder layer. x: (B, T, C). write(i, k, v) stores the new keys/values,
        attend(i, q) returns the attention output (B, H, T, D); linear(x, weight, bias=None)."""
        layer = self.layers[i]
        qkv_weight, qkv_bias, sizes, gate_up, inter = self.fused[i]
        o_proj, down_proj = layer.self_attn.o_proj, layer.mlp.down_proj
        B, T, _ = x.shape
        h = layer.input_layernorm(x)
        q, k, v = linear(h, qkv_weight, qkv_bias).split(sizes, dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        write(i, k, v)
        out = attend(i, q).transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*D)
        x = x + linear(out, o_proj.weight, o_proj.bias)
        h = layer.post_attention_layernorm(x)
        gate, up = linear(h, gate_up).split(inter, dim=-1)  # (B, T, I) each
        activated = self.hidden_act(gate) if self.hidden_act else layer.mlp.act_fn(gate)
        return x + linear(activated * up, down_proj.weight, down_proj.bias)

    def _logits(self, x: torch.Tensor, linear=F.linear) -> torch.Tensor:
        return linear(self.norm(x), self.lm_head.weight, self.lm_head.bias).float()  # (B, V)

    @staticmethod
    def row_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """F.linear for decode steps, x: (R, 1, C) with R a multiple of ROW_QUANTUM, computed
        as weight @ x.T per group of ROW_QUANTUM rows. Measured with MKL on the dev machines
        (benchmarks/RESULTS.md, "decode matmuls"): for a few rows this layout runs 2-3x faster
        than F.linear (which reads the weights inefficiently at small M), and a row's result is
        bit-identical whatever the other rows of its group, so batch-invariant by construction."""
        R = x.shape[0]
        flat = x.reshape(R, -1)  # (R, C)
        out = torch.cat(
            [weight @ flat[g : g + ROW_QUANTUM].T for g in range(0, R, ROW_QUANTUM)], dim=1
        ).T  # (R, O)
        if bias is not None:
            out = out + bias
        return out.contiguous().view(R, 1, -1)  # (R, 1, O)

    def save_prefix(self, slot: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Copies of row `slot`'s keys/values for columns [0, length), per layer (Hkv, L, D)."""
        return [
            (keys[slot, :, :length].clone(), values[slot, :, :length].clone())
            for keys, values in zip(self.keys, self.values, strict=True)
        ]

    def load_prefix(self, slot: int, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        length = saved[0][0].shape[1]
        for (keys, values), (k, v) in zip(zip(self.keys, self.values, strict=True), saved, strict=True):
            keys[slot, :, :length] = k
            values[slot, :, :length] = v

    def prefill(self, slot: int, ids: list[int], start: int) -> torch.Tensor:
        """Run prompt tokens `ids` at positions start.. into row `slot`; logits of the last (1, V)."""
        T = len(ids)
        end = start + T
        tokens = torch.tensor([ids], device=self.device)  # (1, T)
        x = self.embed(tokens)  # (1, T, C)
        cos, sin = self.rotary(x, torch.arange(start, end, device=self.device)[None])  # (1, T, D)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (1, 1, T, D)
        mask = None
        if start:  # chunk after the first: each new token sees the cached prefix and itself causally
            mask = self.columns[:end][None, :] <= torch.arange(start, end, device=self.device)[:, None]

        def write(i, k, v):
            self.keys[i][slot, :, start:end] = k[0]
            self.values[i][slot, :, start:end] = v[0]

        def attend(i, q):
            keys = self.keys[i][slot : slot + 1, :, :end]  # (1, Hkv, end, D)
            values = self.values[i][slot : slot + 1, :, :end]
            return F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, is_causal=mask is None, enable_gqa=True
            )

        for i in range(len(self.layers)):
            x = self._layer(i, x, cos, sin, write, attend)
        return self._logits(x[:, -1])

    def decode(self, ids: torch.Tensor, positions: torch.Tensor, width: int) -> torch.Tensor:
        """One token for each of the first R rows (R a multiple of ROW_QUANTUM). ids, positions:
        (R,); a row with nothing to decode has position `capacity` (the scratch column). Attends
        to columns [0, width). Logits (R, V)."""
        R = ids.shape[0]
        x = self.embed(ids[:, None])  # (R, 1, C)
        rope_positions = positions.clamp(max=self.capacity - 1)[:, None]  # (R, 1)
        cos, sin = self.rotary(x, rope_positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (R, 1, 1, D)
        # Row r sees its columns [0, position_r]; idle rows see column 0 only (never all-masked).
        visible = torch.where(positions >= self.capacity, torch.zeros_like(positions), positions)
        hidden = self.columns[:width][None, :] > visible[:, None]  # (R, W)
        bias = torch.zeros(R, 1, 1, width, device=self.device).masked_fill_(hidden[:, None, None], -torch.inf)
        rows = self.rows[:R]
        G, scale = self.n_heads // self.n_kv, self.head_dim**-0.5

        def write(i, k, v):
            self.keys[i][rows, :, positions] = k[:, :, 0]  # (R, Hkv, D) at each row's column
            self.values[i][rows, :, positions] = v[:, :, 0]

        def attend(i, q):
            # Written out rather than SDPA: for one query per row the CPU kernels' overhead
            # dominates (bf16 SDPA measured 3-10x slower, benchmarks/RESULTS.md). keys @ q^T reads
            # each row's cache block in place; scores softmax in float32, as transformers' eager
            # attention does. Each row is its own batch entry: batch-invariant.
            keys, values = self.keys[i][:R, :, :width], self.values[i][:R, :, :width]  # (R, Hkv, W, D)
            grouped = q.reshape(R, self.n_kv, G, self.head_dim)  # (R, Hkv, G, D), heads in kv order
            scores = torch.matmul(keys, grouped.transpose(-1, -2)).transpose(-1, -2)  # (R, Hkv, G, W)
            weights = torch.softmax(scores.float() * scale + bias, dim=-1).to(values.dtype)
            return torch.matmul(weights, values).reshape(R, self.n_heads, 1, self.head_dim)

        for i in range(len(self.layers)):
            x = self._layer(i, x, cos, sin, write, attend, self.decode_linear)
        return self._logits(x[:, -1:], self.decode_linear)[:, 0]


class Engine:
    """Owns the model and the running batch. Thread contract: `submit` and `cancel` may be called
    from any thread; `step` only from the one thread that runs the model (inference/runtime.py)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
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
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if adapter_dir:
            # A fine-tuned version: merge its LoRA adapter into the base weights in float32 (a
            # merge in bf16 rounds the small update away), then cast; decoding then costs exactly
            # what the base model costs.
            from inference.finetune import load_merged

            base = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.float32, attn_implementation="sdpa"
            )
            model = load_merged(base, adapter_dir).to(self.dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=self.dtype, attn_implementation="sdpa"
            )
        self.model = model.to(self.device).eval()
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
        self.prefixes: OrderedDict[tuple[int, ...], list] = OrderedDict()
        self._system_tokens = functools.lru_cache(maxsize=64)(self._encode_system)
        self.prefix_hits = 0
        self.prefix_misses = 0
        self.stop_ids = self._stop_token_ids()
        self.forward = LlamaForward(self.model, slots=slots, capacity=self.capacity)
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
            "event=model_loaded path=%s adapter=%s device=%s dtype=%s slots=%d capacity=%d seconds=%.2f",
            model_dir,
            adapter_dir or "-",
            self.device,
            self.dtype,
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

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def check_prompt(self, prompt_ids: list[int]) -> None:
        if len(prompt_ids) > self.max_input_tokens:
            raise InputTooLong(
                f"The prompt has {len(prompt_ids)} tokens; the limit is {self.max_input_tokens}."
            )
        if not prompt_ids:
            raise InputTooLong("The prompt is empty.", code="empty_input")

    def shared_prefix_len(self, messages: list[dict[str, str]], prompt_ids: list[int]) -> int:
        """Tokens of a leading system message, when the prompt starts with exactly them and goes
        on after them: the part many requests share (instructions), worth caching."""
        if not messages or messages[0].get("role") != "system" or not self.prefix_cache_tokens:
            return 0
        prefix = self._system_tokens(messages[0]["content"])
        if len(prefix) < len(prompt_ids) and prompt_ids[: len(prefix)] == prefix:
            return len(prefix)
        return 0

    def _encode_system(self, content: str) -> list[int]:
        text = self.tokenizer.apply_chat_template([{"role": "system", "content": content}], tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False)

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
        R = min(self.forward.rows_allocated, -(-highest // ROW_QUANTUM) * ROW_QUANTUM)
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

"""The batched forward pass of a Llama-family model over a slot KV cache: prompt chunks into one
row (prefill), one token for every running row at once (decode). The scheduler (scheduler.py)
decides what runs; this module only computes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import PreTrainedModel

from inference.base import ModelUnavailable
from inference.engine.quant import DenseLinear, LoraDelta, LoraPiece, Matmul, QuantLinear

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")

# Decode steps run a multiple of this many rows, and on CPU their matmuls run per group of this
# many rows (LlamaForward.row_linear). Measured with MKL on the dev machines: a row's result is
# then bit-identical whatever the other rows and its position among them, and differs for other
# group sizes (remainder rows take another kernel); greedy output does not depend on who else is
# in the batch. bfloat16 matmuls alone would allow 1, but the decode attention's batched matmuls
# then were not invariant (measured in an earlier torch: greedy text changed), so it holds for the
# float weights. With quantised weights (CHAT_WEIGHTS=int4|int8) the quantum is 1: those kernels
# and, with torch 2.13, the attention's matmuls are row-invariant (tests/test_quantised.py).
ROW_QUANTUM = 4

# A Hugging Face decoder layer of the Llama family (LlamaDecoderLayer, Qwen2DecoderLayer...): its
# submodules are reached by name, which torch's Module typing cannot follow.
Layer = Any
SavedPrefix = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (Hkv, L, D)
# What an adapter adds beside quantised weights, by module name ("model.layers.0.self_attn.q_proj"):
# the module's weight before the merge (float32) and its LoRA piece (loading.load_lora).
Lora = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # base weight, A, B * scaling
WEIGHTS = ("bf16", "int8", "int4")  # CHAT_WEIGHTS: float weights in the serving dtype, or quantised
Write = Callable[[int, torch.Tensor, torch.Tensor], None]  # (layer, keys, values)
Attend = Callable[[int, torch.Tensor], torch.Tensor]  # (layer, queries) -> attention output


class Linear(Protocol):
    """F.linear's shape: x @ weight.T (+ bias)."""

    def __call__(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, /
    ) -> torch.Tensor: ...


class Fused(NamedTuple):
    """One layer's projections fused into one matrix each (LlamaForward._fuse)."""

    qkv: torch.Tensor  # (Hq*D + 2*Hkv*D, C)
    qkv_bias: torch.Tensor | None
    sizes: list[int]  # rows of q, k and v in qkv
    gate_up: torch.Tensor  # (2*I, C)
    inter: int  # I, the MLP's intermediate size


class Norm(NamedTuple):
    weight: torch.Tensor
    eps: float


class DecodeLayer(NamedTuple):
    """One layer as a decode step runs it: norms and the four projections as matmuls."""

    input_norm: Norm
    post_norm: Norm
    qkv: Matmul  # (R, C) -> (R, Hq*D + 2*Hkv*D)
    o: Matmul
    gate_up: Matmul  # (R, C) -> (R, 2*I)
    inter: int
    down: Matmul


class LlamaForward:
    """The batched forward pass over a Llama-family model's weights and a slot KV cache.

    q/k/v and gate/up projections are fused into one matrix each (as vLLM does): three and two
    matmuls become one, with fewer Python calls per layer. The modules' own weights become views
    into the fused matrices, so `model.generate` still works on the same memory.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        slots: int,
        capacity: int,
        weights: str = "bf16",
        lora: Lora | None = None,
    ) -> None:
        config = model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelUnavailable(
                f"The batching engine runs {SUPPORTED_MODEL_TYPES} models, not {config.model_type}."
            )
        inner: Any = model.model  # LlamaModel and kin: typed as a plain Module by torch
        self.layers: list[Layer] = list(inner.layers)
        self.embed, self.norm, self.rotary, self.lm_head = (
            inner.embed_tokens,
            inner.norm,
            inner.rotary_emb,
            model.lm_head,
        )
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
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
        self.decode_linear: Linear = self.row_linear if cpu_float32 else F.linear
        self.columns = torch.arange(capacity + 1, device=self.device)  # (C+1,)
        # Rotary angles for every column, once: the same elementwise values the module computes.
        cos, sin = self.rotary(torch.zeros(1, dtype=self.dtype, device=self.device), self.columns[None])
        self.cos, self.sin = cos[0], sin[0]  # (C+1, D)
        self.act: Callable[[torch.Tensor], torch.Tensor] = (
            F.silu if config.hidden_act == "silu" else self.layers[0].mlp.act_fn
        )
        self.weights = weights
        # The quantised kernels and the decode attention give a row the same bits whatever the
        # number of rows (measured, tests/test_quantised.py): a step then runs exactly the rows up
        # to the highest in use, so one stream attends over one row, not ROW_QUANTUM.
        self.row_quantum = ROW_QUANTUM if weights == "bf16" else 1
        self.decode_layers = [self._decode_layer(i, lora or {}) for i in range(len(self.layers))]
        self.final_norm = Norm(self.norm.weight, self.norm.variance_epsilon)
        # The LM head (the tied embedding: Q8_0 in the GGUF) is int8 for both quantised settings.
        self.decode_head = self._matmul("lm_head", self.lm_head, 8 if weights != "bf16" else 0, {})

    def _decode_layer(self, i: int, lora: Lora) -> DecodeLayer:
        layer, fused = self.layers[i], self.fused[i]
        attn, mlp = layer.self_attn, layer.mlp
        bits = {"bf16": 0, "int8": 8, "int4": 4}[self.weights]
        prefix = f"model.layers.{i}."
        qkv = self._fused_matmul(
            [(prefix + f"self_attn.{n}", getattr(attn, n)) for n in ("q_proj", "k_proj", "v_proj")],
            fused.qkv,
            fused.qkv_bias,
            bits,
            lora,
        )
        gate_up = self._fused_matmul(
            [(prefix + f"mlp.{n}", getattr(mlp, n)) for n in ("gate_proj", "up_proj")],
            fused.gate_up,
            None,
            bits,
            lora,
        )
        return DecodeLayer(
            input_norm=Norm(layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon),
            post_norm=Norm(
                layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
            ),
            qkv=qkv,
            o=self._matmul(prefix + "self_attn.o_proj", attn.o_proj, bits, lora),
            gate_up=gate_up,
            inter=fused.inter,
            down=self._matmul(prefix + "mlp.down_proj", mlp.down_proj, bits, lora),
        )

    def _matmul(self, name: str, module: Any, bits: int, lora: Lora) -> Matmul:
        return self._fused_matmul([(name, module)], module.weight, module.bias, bits, lora)

    def _fused_matmul(
        self,
        parts: list[tuple[str, Any]],
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        bits: int,
        lora: Lora,
    ) -> Matmul:
        """The decode matmul of a (fused) weight. Float weights: the weight itself (an adapter is
        already merged into it). Quantised: the weights before any merge, quantised, with the
        adapter's pieces beside them."""
        if not bits:
            return DenseLinear(weight, bias, self.decode_linear)
        pieces, base, start = [], [], 0
        for name, module in parts:
            size = module.weight.shape[0]
            if name in lora:
                before, down, up = lora[name]
                base.append(before)
                pieces.append(LoraPiece(start, start + size, down.to(self.dtype), up.to(self.dtype)))
            else:
                base.append(module.weight.detach())
            start += size
        full = torch.cat([w.float() for w in base]) if pieces else weight
        return QuantLinear(full, bits, self.dtype, bias, LoraDelta(pieces) if pieces else None)

    def quantised_bytes(self) -> int:
        """Bytes of the quantised decode weights (0 for CHAT_WEIGHTS=bf16)."""
        matmuls = [m for layer in self.decode_layers for m in (layer.qkv, layer.o, layer.gate_up, layer.down)]
        return sum(m.nbytes() for m in [*matmuls, self.decode_head] if isinstance(m, QuantLinear))

    def _fuse(self, layer: Layer) -> Fused:
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
        return Fused(qkv, bias, sizes, gate_up, inter)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: (B, H, T, D); cos/sin: (B, 1, T, D). RoPE as in transformers' apply_rotary_pos_emb.
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _layer(
        self,
        i: int,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        write: Write,
        attend: Attend,
    ) -> torch.Tensor:
        """One decoder layer of a prompt chunk. x: (B, T, C). write(i, k, v) stores the new
        keys/values, attend(i, q) returns the attention output (B, H, T, D)."""
        layer = self.layers[i]
        qkv_weight, qkv_bias, sizes, gate_up, inter = self.fused[i]
        o_proj, down_proj = layer.self_attn.o_proj, layer.mlp.down_proj
        B, T, _ = x.shape
        h = layer.input_layernorm(x)
        q, k, v = torch.split(F.linear(h, qkv_weight, qkv_bias), sizes, dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        write(i, k, v)
        out = attend(i, q).transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*D)
        x = x + F.linear(out, o_proj.weight, o_proj.bias)
        h = layer.post_attention_layernorm(x)
        gate, up = torch.split(F.linear(h, gate_up), inter, dim=-1)  # (B, T, I) each
        return x + F.linear(self.act(gate) * up, down_proj.weight, down_proj.bias)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(x), self.lm_head.weight, self.lm_head.bias).float()  # (B, V)

    @staticmethod
    def row_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """F.linear for decode steps, x: (R, C) with R a multiple of ROW_QUANTUM, computed
        as weight @ x.T per group of ROW_QUANTUM rows. Measured with MKL on the dev machines
        (benchmarks/RESULTS.md, "decode matmuls"): for a few rows this layout runs 2-3x faster
        than F.linear (which reads the weights inefficiently at small M), and a row's result is
        bit-identical whatever the other rows of its group, so batch-invariant by construction."""
        R = x.shape[0]
        out = torch.cat([weight @ x[g : g + ROW_QUANTUM].T for g in range(0, R, ROW_QUANTUM)], dim=1).T
        if bias is not None:
            out = out + bias
        return out.contiguous()  # (R, O)

    def save_prefix(self, slot: int, length: int) -> SavedPrefix:
        """Copies of row `slot`'s keys/values for columns [0, length), per layer (Hkv, L, D)."""
        return [
            (keys[slot, :, :length].clone(), values[slot, :, :length].clone())
            for keys, values in zip(self.keys, self.values, strict=True)
        ]

    def load_prefix(self, slot: int, saved: SavedPrefix) -> None:
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

        def write(i: int, k: torch.Tensor, v: torch.Tensor) -> None:
            self.keys[i][slot, :, start:end] = k[0]
            self.values[i][slot, :, start:end] = v[0]

        def attend(i: int, q: torch.Tensor) -> torch.Tensor:
            keys = self.keys[i][slot : slot + 1, :, :end]  # (1, Hkv, end, D)
            values = self.values[i][slot : slot + 1, :, :end]
            return F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, is_causal=mask is None, enable_gqa=True
            )

        for i in range(len(self.layers)):
            x = self._layer(i, x, cos, sin, write, attend)
        return self._logits(x[:, -1])

    def decode(self, ids: torch.Tensor, positions: torch.Tensor, width: int) -> torch.Tensor:
        """One token for each of the first R rows (R a multiple of row_quantum). ids, positions:
        (R,); a row with nothing to decode has position `capacity` (the scratch column). Attends
        to columns [0, width). Logits (R, V).

        Written as few tensor operations as the maths allows (a decode step of a 135M model is
        ~20 operations per layer, each costing microseconds of dispatch): rotary angles from a
        table, RMSNorm as one fused kernel (bit-identical to transformers' float32 formulation,
        tests/test_quantised.py), 2-D activations, and the projections as `DecodeLayer` matmuls:
        the quantised kernels for CHAT_WEIGHTS=int4|int8, F.linear (or row_linear) otherwise."""
        R, D = ids.shape[0], self.head_dim
        x = self.embed(ids)  # (R, C)
        angle = positions.clamp(max=self.capacity - 1)
        cos, sin = self.cos[angle][:, None], self.sin[angle][:, None]  # (R, 1, D)
        # Row r sees its columns [0, position_r]; idle rows see column 0 only (never all-masked).
        visible = torch.where(positions >= self.capacity, torch.zeros_like(positions), positions)
        hidden = self.columns[:width][None, :] > visible[:, None]  # (R, W)
        bias = torch.zeros(R, 1, 1, width, device=self.device).masked_fill_(hidden[:, None, None], -torch.inf)
        rows = self.rows[:R]
        G, scale, half = self.n_heads // self.n_kv, D**-0.5, D // 2
        H, Hkv = self.n_heads, self.n_kv
        for i, layer in enumerate(self.decode_layers):
            h = self._norm(x, layer.input_norm)
            qkv = layer.qkv(h)  # (R, (H + 2*Hkv) * D)
            qk = qkv[:, : (H + Hkv) * D].view(R, H + Hkv, D)  # queries and keys rotate alike
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin
            q, k, v = qk[:, :H], qk[:, H:], qkv[:, (H + Hkv) * D :]  # (R, H, D), (R, Hkv, D), (R, Hkv*D)
            self.keys[i][rows, :, positions] = k  # (R, Hkv, D) at each row's column
            self.values[i][rows, :, positions] = v.view(R, self.n_kv, D)
            # Written out rather than SDPA: for one query per row the CPU kernels' overhead
            # dominates (bf16 SDPA measured 3-10x slower, benchmarks/RESULTS.md). keys @ q^T reads
            # each row's cache block in place; scores softmax in float32, as transformers' eager
            # attention does. Each row is its own batch entry: batch-invariant.
            keys, values = self.keys[i][:R, :, :width], self.values[i][:R, :, :width]  # (R, Hkv, W, D)
            grouped = q.reshape(R, self.n_kv, G, D)  # heads in kv order
            scores = torch.matmul(keys, grouped.transpose(-1, -2)).transpose(-1, -2)  # (R, Hkv, G, W)
            weights = torch.softmax(scores.float() * scale + bias, dim=-1).to(values.dtype)
            out = torch.matmul(weights, values).view(R, self.n_heads * D)  # (R, H*D)
            x = x + layer.o(out)
            h = self._norm(x, layer.post_norm)
            gate, up = torch.split(layer.gate_up(h), layer.inter, dim=-1)  # (R, I) each
            x = x + layer.down(self.act(gate) * up)
        return self.decode_head(self._norm(x, self.final_norm)).float()  # (R, V)

    def _norm(self, x: torch.Tensor, norm: Norm) -> torch.Tensor:
        # transformers' LlamaRMSNorm: normalise in float32, round to the dtype, then scale.
        return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=norm.eps).to(x.dtype)

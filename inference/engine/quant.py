"""Weight-only quantised linears for decode steps (CHAT_WEIGHTS=int4|int8), and LoRA beside them.

At one stream a decode step reads every weight once, so its speed is the bytes read: bf16 weights
are ~270 MB per token for SmolLM2-135M, 4-bit ones a quarter of that. torch ships CPU kernels that
multiply activations by packed int4 (grouped scale and zero) or int8 (per-channel scale) weights
without a dequantised copy: `aten._weight_int4pack_mm_for_cpu` and `aten._weight_int8pack_mm`
(the kernels gpt-fast and torchao use). Activations stay in the serving dtype.

The offline chat model starts life as a Q4_1 GGUF: groups of 32 weights stored as `d * q + m`
with q in 0..15, where llama.cpp's quantiser sets m to the group's minimum and d to (max - min) /
15. Quantising the dequantised weights again with the same rule (group 32, min/max) recovers
those q exactly, so int4 loses nothing against the float copy but the rounding of d and m to the
serving dtype. Its tied embedding / LM head was Q8_0 (int8, scale per 32): the LM head is int8
with a scale per row here (int8 per group has no CPU kernel in torch).

A LoRA adapter cannot be merged into 4-bit weights: its update is smaller than half a
quantisation step and rounds away. With quantised weights it runs beside them instead
(`LoraDelta`: x @ A^T @ B^T * scaling added to the projection's output, QLoRA's arrangement).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812

GROUP = 32  # the Q4_1 block: quantising with it reproduces the GGUF's own 4-bit values
INT4_INNER_K_TILES = 2  # the packing torch's CPU int4 kernel expects (as torchao passes it)

Matmul = Callable[[torch.Tensor], torch.Tensor]  # (M, K) -> (M, N)


class LoraPiece(NamedTuple):
    """One adapted projection inside a (possibly fused) matrix: output rows [start, stop)."""

    start: int
    stop: int
    down: torch.Tensor  # A: (r, K)
    up: torch.Tensor  # B * scaling: (stop - start, r)


class LoraDelta:
    """The low-rank updates of the projections fused into one matrix, added beside it."""

    def __init__(self, pieces: list[LoraPiece]) -> None:
        self.pieces = pieces

    def add_to(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # y: (M, N) the quantised matmul's output, x: (M, K) its input
        for piece in self.pieces:
            y[:, piece.start : piece.stop] += (x @ piece.down.T) @ piece.up.T
        return y


class QuantLinear:
    """y = x @ W^T (+ bias) (+ LoRA) with W stored int4 (grouped) or int8 (per row).

    Both kernels give each row of x the same bits whatever the other rows (measured, and checked
    by tests/test_quantised.py), so greedy output does not depend on the batch around it."""

    def __init__(
        self,
        weight: torch.Tensor,
        bits: int,
        dtype: torch.dtype,
        bias: torch.Tensor | None = None,
        lora: LoraDelta | None = None,
    ) -> None:
        self.bits = bits
        self.out_features, self.in_features = weight.shape
        self.bias = None if bias is None else bias.to(dtype)
        self.lora = lora
        w = weight.detach().float()
        if bits == 4:
            self.packed, self.scales = quantise_int4(w, dtype)
        elif bits == 8:
            self.packed, self.scales = quantise_int8(w, dtype)
        else:
            raise ValueError(f"{bits}-bit weights are not supported")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x: (M, K) -> (M, N). torch.ops calls are typed Any.
        y: torch.Tensor
        if self.bits == 4:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales)
        else:
            y = torch.ops.aten._weight_int8pack_mm(x, self.packed, self.scales)
        if self.bias is not None:
            y = y + self.bias
        if self.lora is not None:
            y = self.lora.add_to(y, x)
        return y

    def nbytes(self) -> int:
        return (
            self.packed.numel() * self.packed.element_size()
            + self.scales.numel() * self.scales.element_size()
        )


class DenseLinear:
    """The float path behind the same call: F.linear (or a caller's batch-invariant variant)."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        linear: Callable[..., torch.Tensor] = F.linear,
    ) -> None:
        self.weight, self.bias, self.linear = weight, bias, linear

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x, self.weight, self.bias)


def quantise_int4(w: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit, GROUP weights per scale and zero. w: (N, K) float32.
    Returns the packed weights and (K / GROUP, N, 2) scales and zeros in `dtype`: the CPU kernel
    computes w = (q - 8) * scale + zero."""
    N, K = w.shape
    if K % GROUP or N % 16:
        raise ValueError(f"int4 needs in_features % {GROUP} == 0 and out_features % 16 == 0, not {(N, K)}")
    groups = w.view(N, K // GROUP, GROUP)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, K/G)
    scale = ((high - low) / 15).clamp(min=torch.finfo(torch.float32).tiny)
    q = ((groups - low[..., None]) / scale[..., None]).round_().clamp_(0, 15).to(torch.int32).view(N, K)
    scales_zeros = torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1).contiguous()
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES)
    return packed, scales_zeros.to(dtype)


def quantise_int8(w: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 8-bit, one scale per output row. w: (N, K) float32 -> (N, K) int8, (N,) scales."""
    scale = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
    q = (w / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8)
    return q, scale.to(dtype)

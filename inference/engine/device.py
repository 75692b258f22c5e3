"""Where the models run and in which precision: INFERENCE_DEVICE and CHAT_DTYPE resolved.

Shared by the chat engine, fine-tuning, the embedder and the image generator."""

from __future__ import annotations

from pathlib import Path

import torch


def resolve_device(setting: str) -> torch.device:
    """ "auto": CUDA when a device is visible, else the CPU; anything else as torch names it."""
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
    dtype = getattr(torch, setting)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{setting!r} is not a torch dtype")
    return dtype


def pipeline_dtype(device: torch.device) -> torch.dtype:
    """The image pipelines' dtype: half precision on CUDA (bf16 where supported: its float32 range
    avoids the fp16 overflow that turns some VAEs' output into NaN); float32 elsewhere, as the CPU
    kernels want."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32

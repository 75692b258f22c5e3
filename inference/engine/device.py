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


def resolve_weights(setting: str, device: torch.device) -> str:
    """CHAT_WEIGHTS: "auto" is int4 on the CPU (a decode step reads a quarter of bf16's bytes;
    benchmarks/RESULTS.md, "Quantised decode") and the float weights (bf16) elsewhere. torch's
    int4/int8 weight-only kernels used here are its CPU ones."""
    if setting == "auto":
        return "int4" if device.type == "cpu" else "bf16"
    if setting not in ("bf16", "int8", "int4"):
        raise ValueError(f"CHAT_WEIGHTS={setting!r}: expected auto, bf16, int8 or int4")
    if setting != "bf16" and device.type != "cpu":
        raise ValueError(f"CHAT_WEIGHTS={setting} runs on the CPU; use bf16 on {device.type}")
    return setting


def pipeline_dtype(device: torch.device) -> torch.dtype:
    """The image pipelines' dtype: half precision on CUDA (bf16 where supported: its float32 range
    avoids the fp16 overflow that turns some VAEs' output into NaN); float32 elsewhere, as the CPU
    kernels want."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32

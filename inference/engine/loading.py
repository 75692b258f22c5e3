"""The chat model from its folder, as the engine runs it: the weights in the serving dtype on the
serving device, with a fine-tuned version's LoRA adapter merged in first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from inference.base import ModelUnavailable
from inference.engine.forward import Lora

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # what peft's save_pretrained writes (finetune.py)


def load_causal_lm(
    model_dir: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    adapter_dir: str | Path | None = None,
    lora: Lora | None = None,
) -> PreTrainedModel:
    """The model in `model_dir`, in eval mode on `device`. Costs the read of the weights (about a
    second for SmolLM2-135M); an adapter adds a float32 load and the merge. Given a `lora` dict,
    the adapter's pieces and the weights they were merged into are put in it too (quantised
    decoding runs them beside the base weights: quant.py)."""
    if adapter_dir:
        # A fine-tuned version: merge its LoRA adapter into the base weights in float32 (a merge
        # in bf16 rounds the small update away), then cast; decoding then costs exactly what the
        # base model costs.
        base = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation="sdpa"
        )
        model = merge_adapter(base, adapter_dir, lora)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    # In place (Module.to returns the module itself). transformers decorates its override with
    # functools.wraps(Module.to), which mypy reads as the unbound function: hence the ignore.
    model.to(device=device, dtype=dtype)  # type: ignore[call-arg]
    model.train(False)  # eval mode, as eval() does (transformers' eval() has no annotations)
    return model


def merge_adapter(
    model: PreTrainedModel, adapter_dir: str | Path, lora: Lora | None = None
) -> PreTrainedModel:
    """The base `model` with the LoRA adapter in `adapter_dir` merged into its weights (a plain
    transformers model again: serving needs no peft after this). `lora`, when given, receives
    each adapted module's weight before the merge and its pieces (A, B * scaling)."""
    # peft takes about 3 s to import (measured with torch and transformers already loaded):
    # imported here, only a fine-tuned version pays for it, not every start of the server.
    from peft import PeftModel

    if not (Path(adapter_dir) / ADAPTER_WEIGHTS).exists():
        raise ModelUnavailable(f"No adapter at {adapter_dir}.")
    adapted = PeftModel.from_pretrained(model, str(adapter_dir))
    if lora is not None:
        lora.update(lora_pieces(adapted))
    merged = adapted.merge_and_unload()
    assert isinstance(merged, PreTrainedModel)
    return merged


def lora_pieces(adapted: Any) -> Lora:
    """Per adapted module of a PeftModel (by the name it has in the plain model): its weight
    before the merge and the adapter's A and B * scaling, all float32 copies."""
    pieces: Lora = {}
    for name, module in adapted.base_model.model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        down = module.lora_A["default"].weight.detach().float().clone()  # (r, K)
        up = module.lora_B["default"].weight.detach().float() * module.scaling["default"]  # (N, r)
        pieces[name] = (module.base_layer.weight.detach().float().clone(), down, up.clone())
    return pieces

"""Quantised decode weights (CHAT_WEIGHTS=int4|int8) on the real SmolLM2: the 4-bit values of the
GGUF come back exactly, every row's result is independent of the batch, the fused RMSNorm is
transformers' to the bit, and a LoRA adapter runs beside the quantised weights."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from inference.base import GenerationParams
from inference.engine.quant import GROUP, QuantLinear, quantise_int4
from inference.engine.scheduler import Engine
from inference.runtime import model_thread
from tests.conftest import chat_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def float_model():
    return AutoModelForCausalLM.from_pretrained(chat_model_dir(), dtype=torch.float32)


def test_the_default_on_a_cpu_decodes_with_int4_weights(text_generator):
    engine = text_generator.engine
    assert engine.device.type == "cpu" and engine.weights == "int4"
    # 4-bit layers and an int8 LM head: well under half of the bf16 weights' ~270 MB.
    assert 0 < engine.forward.quantised_bytes() < 110e6


def test_int4_recovers_the_gguf_4bit_values_of_every_projection(float_model):
    # The converted model holds the Q4_1 GGUF dequantised (d * q + m per 32 weights); quantising
    # with the same rule must find the same 16 levels, so the only loss is scale rounding.
    layer = float_model.model.layers[3]
    for projection in (layer.self_attn.q_proj, layer.mlp.down_proj):
        w = projection.weight.detach()
        _, scales_zeros = quantise_int4(w, torch.float32)  # (K/G, N, 2)
        scale, zero = scales_zeros[..., 0].T, scales_zeros[..., 1].T  # (N, K/G)
        groups = w.view(w.shape[0], -1, GROUP)
        q = ((groups - (zero - 8 * scale)[..., None]) / scale[..., None]).round()
        rebuilt = (q - 8) * scale[..., None] + zero[..., None]
        assert torch.allclose(rebuilt, groups, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bits", [4, 8])
def test_a_rows_result_does_not_depend_on_the_other_rows(bits, float_model):
    weight = float_model.model.layers[0].mlp.gate_proj.weight.detach()
    linear = QuantLinear(weight, bits, torch.bfloat16)
    x = torch.randn(16, weight.shape[1]).to(torch.bfloat16)
    full = linear(x)
    for rows in (slice(0, 1), slice(0, 4), slice(4, 8), slice(3, 15)):
        assert torch.equal(linear(x[rows]), full[rows])
    reference = x.float() @ weight.T
    assert (full.float() - reference).abs().max() < 0.05 * reference.abs().max()  # bf16 output, int8 rows


def test_decode_rmsnorm_is_transformers_rmsnorm_to_the_bit(text_generator):
    forward = text_generator.engine.forward
    module = forward.layers[5].post_attention_layernorm
    x = (torch.randn(64, module.weight.shape[0]) * 4).to(forward.dtype)
    assert torch.equal(forward._norm(x, forward.decode_layers[5].post_norm), module(x))


def _greedy(engine: Engine, prompt: list[int], count: int) -> list[int]:
    tokens: list[int] = []
    request = engine.submit(prompt, GenerationParams(max_tokens=count, ignore_eos=True), lambda *_: None)
    request.listener = lambda kind, value: tokens.append(value) if kind == "token" else None

    def run() -> None:
        with torch.inference_mode():
            while not request.finished:
                engine.step()

    model_thread().call(run)
    return tokens


def test_int4_answers_start_as_the_float_models_do(text_generator):
    # Not bit-equal (different kernels, scale rounding), but the same model: the greedy
    # continuation of a plain question agrees with the bf16 weights' for its first tokens.
    int4 = text_generator.engine
    bf16 = model_thread().call(Engine, chat_model_dir(), weights="bf16", slots=4)
    prompt = int4.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    assert _greedy(int4, prompt, 8) == _greedy(bf16, prompt, 8)


def test_a_lora_adapter_runs_beside_the_quantised_weights(tmp_path, float_model):
    from peft import LoraConfig, get_peft_model

    # A random adapter (B is not zero): big enough to change the logits visibly.
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    adapted = get_peft_model(
        AutoModelForCausalLM.from_pretrained(chat_model_dir(), dtype=torch.float32), config
    )
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.02)
    adapted.save_pretrained(tmp_path)

    def last_logits(engine: Engine, prompt: list[int]) -> torch.Tensor:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                engine.forward.prefill(0, prompt[:-1], 0)
                ids = torch.tensor([prompt[-1], 0, 0, 0])
                positions = torch.tensor([len(prompt) - 1] + [engine.capacity] * 3)
                return engine.forward.decode(ids, positions, len(prompt))[0]

        return model_thread().call(run)

    def load(weights: str, adapter: object) -> Engine:
        return model_thread().call(Engine, chat_model_dir(), weights=weights, slots=4, adapter_dir=adapter)

    merged, beside, plain = load("bf16", tmp_path), load("int4", tmp_path), load("int4", None)
    prompt = plain.encode_chat([{"role": "user", "content": "How do I reset my router?"}])
    want, got, without = (last_logits(e, prompt) for e in (merged, beside, plain))
    assert (want - without).abs().max() > 1.0  # the adapter matters
    assert (got - want).abs().max() < 0.25 * (want - without).abs().max()
    assert got.argmax() == want.argmax()
    assert beside.forward.decode_layers[0].qkv.lora is not None  # type: ignore[attr-defined]


def test_a_weights_setting_the_device_cannot_run_is_refused_with_a_clear_error():
    from inference.engine.device import resolve_weights

    assert resolve_weights("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_weights("int4", torch.device("cuda"))
    with pytest.raises(ValueError, match="expected auto, bf16, int8 or int4"):
        resolve_weights("int3", torch.device("cpu"))

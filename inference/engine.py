"""The chat model engine: owns one causal LM and turns prompts into streamed tokens.

It knows nothing of HTTP or websockets (the product apps and the inference server do that). A
generation is an explicit prefill + decode loop over a KV cache, written as a Python generator that
advances one token per `next()`: the caller drives it step by step on the model thread
(inference/runtime.py), so several streams interleave at token boundaries and a client that leaves
stops costing anything at the next step. Batching steps of several streams into one forward pass
comes with the inference-layer issue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from inference.base import GenerationParams, InputTooLong, ModelUnavailable

log = logging.getLogger(__name__)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """bf16 on GPUs; on CPU float32, which measured faster end to end on our 2-core machines for
    this 135M model (benchmarks/RESULTS.md, "dtype")."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, setting)


@dataclass
class StepEvent:
    """One decoded piece of a generation: `text` may be "" while a multi-byte char completes."""

    text: str
    token_id: int


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


class Engine:
    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_input_tokens: int = 1536,
    ) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").exists():
            raise ModelUnavailable(f"No chat model at {model_dir}. Run `python manage.py prepare_models`.")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_input_tokens = max_input_tokens
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = (
            AutoModelForCausalLM.from_pretrained(model_dir, dtype=self.dtype, attn_implementation="sdpa")
            .to(self.device)
            .eval()
        )
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.stop_ids = self._stop_token_ids()
        log.info(
            "event=model_loaded path=%s device=%s dtype=%s seconds=%.2f",
            model_dir,
            self.device,
            self.dtype,
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

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[StepEvent]:
        """Yield decoded pieces one token per `next()`; stops at EOS or max_tokens. Close the
        generator to abandon it (its KV cache is freed with it)."""
        self.check_prompt(prompt_ids)
        max_new = max(0, min(params.max_tokens, self.context_length - len(prompt_ids)))
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(params.seed if params.seed is not None else int(time.time_ns()))
        decoder = IncrementalDecoder(self.tokenizer)
        cache = DynamicCache()
        input_ids = torch.tensor([prompt_ids], device=self.device)  # (1, T)
        # Tokens the answer has used so far. Unlike transformers' generate, prompt tokens are not
        # penalised: a grounded answer should copy facts from its sources (measured on the demo
        # questions: penalising them dropped facts found from 3/8 to 1/8).
        seen = torch.empty(0, device=self.device, dtype=torch.long)
        for _ in range(max_new):
            # logits_to_keep=1: only the last position needs the (V=49k)-wide LM head; computing
            # it for the whole prompt cost ~15% of prefill time.
            logits = self.model(
                input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1
            ).logits
            logits = logits[:, -1, :].float()  # (1, V)
            if params.repetition_penalty != 1.0:
                logits = self._penalise(logits, seen, params.repetition_penalty)
            next_id = self._pick(logits, params, generator)  # (1,)
            token_id = int(next_id.item())
            if token_id in self.stop_ids:
                return
            yield StepEvent(text=decoder.push(token_id), token_id=token_id)
            seen = torch.cat([seen, next_id])
            input_ids = next_id.view(1, 1)  # (1, 1): only the new token; the rest is cached

    @staticmethod
    def _penalise(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
        """CTRL-style repetition penalty: tokens the answer already used become less likely;
        tiny models otherwise loop on one sentence."""
        scores = logits.gather(1, seen.view(1, -1))  # (1, S)
        scores = torch.where(scores > 0, scores / penalty, scores * penalty)
        return logits.scatter(1, seen.view(1, -1), scores)

    @staticmethod
    def _pick(
        logits: torch.Tensor, params: GenerationParams, generator: torch.Generator | None
    ) -> torch.Tensor:
        # logits: (1, V)
        if params.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
            keep = sorted_probs.cumsum(dim=-1) - sorted_probs < params.top_p
            sorted_probs = sorted_probs * keep
            choice = torch.multinomial(sorted_probs, 1, generator=generator)  # (1, 1)
            return sorted_idx.gather(-1, choice).view(1)
        return torch.multinomial(probs, 1, generator=generator).view(1)

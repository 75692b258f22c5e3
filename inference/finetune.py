"""LoRA fine-tuning of the chat model on chat-format examples (peft; plain PyTorch loop).

The product layer builds the examples (assistant/learning/) and registers the result; this module
only trains: it loads the base model folder, wraps its linear layers in LoRA adapters, trains on
the answer tokens only, and saves the adapter (a few MB) to a folder. Serving merges the adapter
into the base weights when it loads a version (inference/engine/loading.py), so a fine-tuned model
decodes exactly as fast as the base.

Cost on the 2-core dev CPU (SmolLM2-135M, float32, rank 8 on every projection), measured by
`python manage.py finetune`: see benchmarks/RESULTS.md ("fine-tuning"). What the knobs cost:
- `max_length`: time per step grows about linearly with it (attention is a small part at 135M);
  examples longer than it are left out (counted), never cut, since a cut would train the model on
  a prompt whose end it never saw.
- `batch_size`: examples per optimiser step; on CPU throughput barely changes with it, so it is
  a smoothing knob, not a speed knob. On a GPU raise it.
- `rank`: adapter size; 8 is plenty for a few hundred examples (the LoRA paper's r=4..8 results).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from inference.engine.device import cpu_has_native_bf16, resolve_device
from inference.engine.loading import ADAPTER_WEIGHTS
from inference.errors import CodedError

log = logging.getLogger(__name__)

IGNORE = -100  # label of tokens that do not count in the loss (the prompt)
Row = tuple[list[int], list[int]]  # one example's token ids and labels


class FineTuneError(CodedError):
    """Training refused (malformed examples, none that fit) or failed (the loss diverged). As a
    DomainError: 400, what was given cannot be trained on as it is."""

    code = "finetune_failed"
    message = "Fine-tuning failed."


@dataclass
class FineTuneConfig:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    learning_rate: float = 3e-4
    epochs: float = 2.0
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 4
    max_length: int = 1024
    warmup_ratio: float = 0.1
    seed: int = 0
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    device: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass
class TrainResult:
    adapter_dir: Path
    sha256: str
    steps: int
    examples: int
    skipped_too_long: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # per optimiser step
    tokens_trained: int = 0
    device: str = "cpu"

    @property
    def first_loss(self) -> float | None:
        return self.losses[0] if self.losses else None

    @property
    def last_loss(self) -> float | None:
        # The mean of the last few steps: one step's loss is noisy.
        tail = self.losses[-5:]
        return sum(tail) / len(tail) if tail else None


Progress = Callable[[int, int, float], None]  # (step, total steps, loss)


def encode_example(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]]) -> Row:
    """Token ids of a whole conversation and its labels: only the last (assistant) message's
    tokens count, the prompt is there to condition on. Uses the model's own chat template, the
    same one serving uses (Engine.encode_chat), so training and serving see the same text."""
    if not messages or messages[-1]["role"] != "assistant":
        raise FineTuneError("A training example must end with the assistant's answer.")
    prompt = tokenizer.apply_chat_template(list(messages[:-1]), add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template(list(messages), tokenize=True)
    prompt, full = _ids(prompt), _ids(full)
    if full[: len(prompt)] != prompt:  # a template that renders history differently at the end
        raise FineTuneError("The chat template does not extend the prompt with the answer.")
    # Train on the answer and its end-of-turn marker; a template's trailing newline after that
    # marker is harmless either way.
    return full, [IGNORE] * len(prompt) + full[len(prompt) :]


def _ids(encoded: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True); 4.x a list.
    if hasattr(encoded, "keys") and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    return list(encoded)


def _batches(rows: list[Row], batch_size: int, rng: random.Random) -> Iterator[list[Row]]:
    """Endless shuffled batches. Each epoch is shuffled, then grouped by length so padding is
    small (sorting within windows of 8 batches keeps the order random across windows)."""
    while True:
        order = list(range(len(rows)))
        rng.shuffle(order)
        window = batch_size * 8
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(rows[i][0]))
            for b in range(0, len(chunk), batch_size):
                yield [rows[i] for i in chunk[b : b + batch_size]]


def _collate(batch: list[Row], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def adapter_sha256(adapter_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in (ADAPTER_WEIGHTS, "adapter_config.json"):
        digest.update((adapter_dir / name).read_bytes())
    return digest.hexdigest()


def train_lora(
    base_dir: str | Path,
    examples: Sequence[Sequence[dict[str, str]]],
    out_dir: str | Path,
    config: FineTuneConfig | None = None,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """Train a LoRA adapter for the model in `base_dir` on chat `examples` (lists of messages
    ending with the assistant's answer) and save it to `out_dir`. Runs on CUDA when present
    (bf16 autocast), else on CPU (bf16 autocast only where the CPU has native bf16)."""
    # peft takes about 3 s to import: here, it costs only a training run, not every process that
    # imports this module for FineTuneConfig (the web process, through the learning loop).
    from peft import LoraConfig, get_peft_model

    config = config or FineTuneConfig()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)  # noqa: S311 - shuffles training batches, not secrets
    device = resolve_device(config.device)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    rows: list[Row] = []
    too_long = 0
    for messages in examples:
        ids, labels = encode_example(tokenizer, messages)
        if len(ids) > config.max_length:
            too_long += 1
            continue
        rows.append((ids, labels))
    if not rows:
        raise FineTuneError(
            f"No training example fits in {config.max_length} tokens ({too_long} too long, "
            f"{len(examples)} given)."
        )
    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = config.max_steps or max(1, math.ceil(per_epoch * config.epochs))

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    # In place; transformers wraps Module.to in functools.wraps, which mypy reads as unbound.
    base.to(device)  # type: ignore[arg-type]
    base.config.use_cache = False
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    warmup = max(1, int(total * config.warmup_ratio))
    autocast = device.type == "cuda" or cpu_has_native_bf16()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    losses: list[float] = []
    tokens = 0
    batches = _batches(rows, config.batch_size, rng)
    for step in range(total):
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate * _lr_factor(step, total, warmup)
        batch = _collate(next(batches), pad_id, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        value = float(loss.detach())  # one host sync per step: the loss is reported anyway
        if not math.isfinite(value):
            raise FineTuneError(f"Training diverged at step {step + 1} (loss {value}).")
        losses.append(value)
        tokens += int(batch["attention_mask"].sum())
        if progress is not None:
            progress(step + 1, total, value)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    seconds = time.perf_counter() - started
    log.info(
        "event=lora_trained steps=%d examples=%d seconds=%.1f first_loss=%.3f last_loss=%.3f",
        total,
        len(rows),
        seconds,
        losses[0],
        losses[-1],
    )
    return TrainResult(
        adapter_dir=out_dir,
        sha256=adapter_sha256(out_dir),
        steps=total,
        examples=len(rows),
        skipped_too_long=too_long,
        seconds=seconds,
        losses=losses,
        tokens_trained=tokens,
        device=str(device),
    )

"""The fine-tuning dataset: human-approved answers as chat-format examples, cleaned and split.

Sources: approved email replies, agent-corrected chat answers and curated Q&A pairs (the
TrainingExample table), or a JSONL file of `{"messages": [...]}` examples. Every example goes
through the same gates, in this order, and each one that is left out says why:

1. `injected_instruction`: an answer that addresses a model ("ignore previous instructions",
   "you are now ...") is poison whoever approved it: training on it teaches the model to obey
   such text. The question may carry one (customers write anything); the answer may not.
2. `personal_data_without_legal_basis`: text with personal data (names, email addresses, phone
   numbers, IBANs, found by core/redaction.py) is used only once an admin has recorded the
   legal basis on the governance page; then it is redacted (placeholders such as <PERSON_1>,
   the same ones serving puts in prompts), never trained on in the clear.
3. `duplicate` / `near_duplicate`: the same question and answer twice, or a question whose
   embedding is within DEDUP_SIMILARITY of a newer kept one (the newest answer wins: policies
   change).
4. The held-out split is decided by a hash of the normalised question, so an example stays on
   the same side in every run, and `leaks_into_eval` drops training examples that paraphrase a
   held-out question (embedding similarity >= LEAK_SIMILARITY): the evaluation never grades the
   model on a question it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from answers.guard import carries_instructions
from answers.prompts import DRAFT_INSTRUCTIONS, INSTRUCTIONS, prompt_messages
from assistant.desk.letter import letter_body
from assistant.models import TrainingExample
from core.errors import DomainError
from core.models import GovernanceSettings
from core.redaction import find_personal_data, redact, redaction_enabled, restore
from retrieval.models import Chunk

DEDUP_SIMILARITY = 0.95
LEAK_SIMILARITY = 0.90
DEFAULT_EVAL_FRACTION = 0.2


class DatasetError(DomainError):
    """A dataset that cannot be used (code "bad_dataset")."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_dataset", message)


@dataclass
class Example:
    """One chat-format example: the prompt messages as serving would build them, and the
    approved answer. `answerable` is False where the knowledge base had nothing (no sources):
    the right answer there is a refusal, and the evaluation checks for one."""

    id: str
    source: str
    messages: list[dict[str, str]]
    answer: str
    available_citations: list[int] = field(default_factory=list)
    redacted: int = 0  # personal data items replaced by placeholders

    @property
    def answerable(self) -> bool:
        return bool(self.available_citations)

    @property
    def question(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")

    def training_messages(self) -> list[dict[str, str]]:
        return [*self.messages, {"role": "assistant", "content": self.answer}]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "messages": self.training_messages()}


@dataclass
class Dataset:
    train: list[Example]
    eval: list[Example]
    excluded: list[tuple[str, str]]  # (example id, reason)
    legal_basis_recorded: bool

    def stats(self) -> dict[str, Any]:
        return {
            "train": len(self.train),
            "eval": len(self.eval),
            "eval_unanswerable": sum(not e.answerable for e in self.eval),
            "sources": dict(Counter(e.source for e in self.train + self.eval)),
            "excluded": dict(Counter(reason for _, reason in self.excluded)),
            "redacted_items": sum(e.redacted for e in self.train + self.eval),
            "legal_basis_recorded": self.legal_basis_recorded,
        }

    def write(self, folder: Path) -> None:
        """train.jsonl and eval.jsonl, for inspection and for re-running a fine-tune elsewhere."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", self.train), ("eval", self.eval)):
            with (folder / f"{name}.jsonl").open("w") as out:
                for example in rows:
                    out.write(json.dumps(example.as_json(), ensure_ascii=False) + "\n")


_CITATION = re.compile(r"\[(\d{1,2})\]")


def cited_numbers(text: str) -> set[int]:
    return {int(n) for n in _CITATION.findall(text)}


def _prompt(
    instructions: str, citations: list[dict], context: list[dict], question: str
) -> tuple[list, list]:
    """The answer prompt rebuilt from stored citations (title and snippet), for examples whose
    exact prompt was not kept; returns the messages and the source numbers in them."""
    blocks, numbers = [], []
    for item in citations:
        n = item.get("n")
        if not isinstance(n, int):
            continue
        numbers.append(n)
        body = item.get("snippet") or item.get("text") or ""
        blocks.append(f"[{n}] {item.get('title', '')}\n{body}".strip())
    history = [
        (turn["role"], turn["content"])
        for turn in context
        if turn.get("role") in ("user", "assistant") and isinstance(turn.get("content"), str)
    ]
    return prompt_messages(instructions, blocks, history, question), numbers


def _from_row(row: TrainingExample) -> Example:
    """An approved email reply keeps the exact prompt its draft was written from (sources and
    thread as the model saw them, already redacted when prompts are); other examples get the
    prompt rebuilt from their stored citations."""
    draft_prompt = row.draft.prompt if row.draft_id and row.draft else None
    if row.source == TrainingExample.Source.EMAIL and draft_prompt:
        messages = [{"role": m["role"], "content": m["content"]} for m in draft_prompt]
        numbers = [c["n"] for c in row.sources if isinstance(c.get("n"), int)]
    else:
        instructions = DRAFT_INSTRUCTIONS if row.source == TrainingExample.Source.EMAIL else INSTRUCTIONS
        messages, numbers = _prompt(instructions, row.sources, row.context, row.question)
    # An approved email carries the desk's greeting and sign-off, which the model is told not to
    # write (desk/letter.py adds them): it learns the body only.
    answer = letter_body(row.answer) if row.source == TrainingExample.Source.EMAIL else row.answer
    return Example(f"te:{row.pk}", row.source, messages, answer.strip(), numbers)


def _known_names(row: TrainingExample) -> list[str]:
    names = []
    if row.ticket_id and row.ticket and row.ticket.customer_name:
        names.append(row.ticket.customer_name)
    return names


def load_approved() -> list[tuple[Example, list[str]]]:
    rows = TrainingExample.objects.select_related("draft", "ticket").order_by("-created_at", "-id")
    return [(_from_row(row), _known_names(row)) for row in rows]


def load_jsonl(path: str | Path) -> list[tuple[Example, list[str]]]:
    """`{"messages": [..., {"role": "assistant", ...}]}` per line; optional "sources":
    [{"n", "title", "snippet"}] (without them the example counts as answerable when its prompt
    has a numbered source)."""
    examples = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            messages = row["messages"]
            if not (
                isinstance(messages, list)
                and len(messages) >= 2
                and all(
                    isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
                    for m in messages
                )
                and messages[-1]["role"] == "assistant"
            ):
                raise ValueError("messages must be a list of {role, content} ending with the assistant")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(f"{path}, line {number}: not a chat example ({exc}).") from exc
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
        numbers = sorted(
            {c["n"] for c in row.get("sources", []) if isinstance(c, dict) and isinstance(c.get("n"), int)}
        )
        if not numbers:
            numbers = sorted(cited_numbers(" ".join(m["content"] for m in prompt if m["role"] == "system")))
        examples.append(
            (Example(f"file:{number}", "file", prompt, messages[-1]["content"].strip(), numbers), [])
        )
    return examples


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _split_hash(question: str) -> float:
    digest = hashlib.sha256(_normalise(question).encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF


def _redact_example(example: Example, known_names: list[str]) -> tuple[Example, int]:
    """The example with personal data in what the customer and agent wrote replaced by
    placeholders; the company's instructions and sources are left as they are."""
    mapping: dict[str, str] = {}
    found = 0

    def clean(text: str) -> str:
        nonlocal found
        result = redact(text, known_names=[*known_names, *mapping.values()])
        found += len(result.findings)
        # One placeholder per person across the whole example: reuse earlier placeholders.
        out = result.text
        for placeholder, original in result.mapping.items():
            existing = next((p for p, o in mapping.items() if o == original), None)
            if existing and existing != placeholder:
                out = out.replace(placeholder, existing)
            else:
                mapping[placeholder] = original
        return out

    messages = [
        m if m["role"] == "system" else {**m, "content": clean(m["content"])} for m in example.messages
    ]
    answer = clean(example.answer)
    # The company's own published details (a support line quoted from a cited page) stay.
    published = {p: o for p, o in mapping.items() if _published(o, example)}
    if published:
        messages = [{**m, "content": restore(m["content"], published)} for m in messages]
        answer = restore(answer, published)
        found -= len(published)
    return Example(example.id, example.source, messages, answer, example.available_citations, found), found


def _published(value: str, example: Example) -> bool:
    """Whether `value` is printed in the example's own sources or elsewhere in the knowledge
    base: the company's published details (its phone numbers and addresses), not a customer's
    personal data. (A person's data that reached the knowledge base is erased from it by
    governance/people.py; until then it is as public as the page it is on.)"""
    if any(value in m["content"] for m in example.messages if m["role"] == "system"):
        return True
    return Chunk.objects.filter(text__contains=value).exists()


def _personal_data(example: Example, known_names: list[str]) -> list[str]:
    texts = [m["content"] for m in example.messages if m["role"] != "system"] + [example.answer]
    return sorted(
        {
            f.entity_type
            for text in texts
            for f in find_personal_data(text, known_names=known_names)
            if not _published(f.text, example)
        }
    )


def build_dataset(
    candidates: list[tuple[Example, list[str]]],
    *,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    embed=None,
) -> Dataset:
    """Run the gates (module docstring) over `candidates` (newest first) and split them.
    `embed(texts) -> (n, dim) L2-normalised` finds near-duplicates and leaks; without it only
    exact duplicates are caught."""
    allowed = GovernanceSettings.load().personal_data_training_allowed
    redacting = redaction_enabled("training")
    kept: list[Example] = []
    excluded: list[tuple[str, str]] = []
    seen: set[str] = set()
    for example, names in candidates:
        if not example.answer or not example.question:
            excluded.append((example.id, "empty"))
            continue
        if carries_instructions(example.answer):
            excluded.append((example.id, "injected_instruction"))
            continue
        if _personal_data(example, names):
            if not allowed:
                excluded.append((example.id, "personal_data_without_legal_basis"))
                continue
            if redacting:
                example, _found = _redact_example(example, names)
        key = _normalise(example.question) + "\x00" + _normalise(example.answer)
        if key in seen:
            excluded.append((example.id, "duplicate"))
            continue
        seen.add(key)
        kept.append(example)

    if embed is not None and len(kept) > 1:
        vectors = np.asarray(embed([e.question for e in kept]), dtype=np.float32)
        unique: list[int] = []
        for i in range(len(kept)):  # newest first: a later near-duplicate of a kept one goes
            if unique and float(np.max(vectors[unique] @ vectors[i])) >= DEDUP_SIMILARITY:
                excluded.append((kept[i].id, "near_duplicate"))
            else:
                unique.append(i)
        kept, vectors = [kept[i] for i in unique], vectors[unique]
    else:
        vectors = None

    held = [_split_hash(e.question) < eval_fraction for e in kept]
    if kept and eval_fraction > 0 and not any(held) and len(kept) >= 2:
        # A tiny dataset: hold out the example the hash puts nearest the line, still stable.
        held[min(range(len(kept)), key=lambda i: _split_hash(kept[i].question))] = True
    evaluation = [e for e, h in zip(kept, held, strict=True) if h]
    train = []
    eval_vectors = vectors[[i for i, h in enumerate(held) if h]] if vectors is not None else None
    for i, (example, h) in enumerate(zip(kept, held, strict=True)):
        if h:
            continue
        if (
            eval_vectors is not None
            and len(eval_vectors)
            and float(np.max(eval_vectors @ vectors[i])) >= LEAK_SIMILARITY
        ):
            excluded.append((example.id, "leaks_into_eval"))
            continue
        train.append(example)
    return Dataset(train=train, eval=evaluation, excluded=excluded, legal_basis_recorded=allowed)

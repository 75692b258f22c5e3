"""The evaluation gate: a candidate and the active model answer the same held-out questions.

Metrics, each in [0, 1], higher is better:
- `answer_similarity`: cosine similarity between the embeddings of the model's answer and the
  approved one (all-MiniLM-L6-v2, the embedder the knowledge base uses), averaged.
- `citation_accuracy`: over questions the sources could answer, the share of answers that cite
  at least one source, cite only sources that were in the prompt, and (where the approved answer
  cites) share a cited source with it.
- `refusal_accuracy`: over all questions, the share where the model refused exactly when it
  should: a question with no sources must get "I do not know" (and an offer of a person), a
  question with sources must not.
- `score`: the mean of the three (of those that have questions to measure).

A candidate is better when its score beats the baseline's by at least MIN_GAIN and none of its
metrics falls more than MAX_DROP below the baseline's: a model that learnt to sound like the
approved replies but stopped refusing does not pass. With a few dozen held-out questions these
numbers move by several points between runs of different data; the model card says so.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from answers.confidence import says_it_does_not_know
from assistant.learning.dataset import Example, cited_numbers
from inference.base import GenerationParams, InferenceError

MIN_GAIN = 0.005
MAX_DROP = 0.05
METRICS = ("answer_similarity", "citation_accuracy", "refusal_accuracy")


def refuses(answer: str) -> bool:
    # The same test the chat uses to offer a person under an answer (assistant/chat/actions.py).
    return not answer or says_it_does_not_know(answer)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    answers: list[dict[str, Any]]  # per question: id, answer, similarity, cited, refused
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.metrics, "seconds": round(self.seconds, 1), "questions": len(self.answers)}


async def _answers(generator, examples: list[Example], max_tokens: int, concurrency: int) -> list[str]:
    """Every question at once, up to `concurrency`: the engine batches them."""
    gate = asyncio.Semaphore(concurrency)
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, repetition_penalty=1.1)

    async def one(example: Example) -> str:
        async with gate:
            parts = []
            try:
                async for delta in generator.stream(example.messages, params):
                    parts.append(delta)
            except InferenceError as exc:  # a prompt too long for the model scores as empty
                return f"[error: {exc.code}]"
            return "".join(parts).strip()

    return await asyncio.gather(*(one(e) for e in examples))


def evaluate(
    generator, examples: list[Example], embed, *, max_tokens: int = 96, concurrency: int = 8
) -> EvalResult:
    started = time.perf_counter()
    answers = asyncio.run(_answers(generator, examples, max_tokens, concurrency))
    similarities = (
        np.sum(
            np.asarray(embed(answers), dtype=np.float32)
            * np.asarray(embed([e.answer for e in examples]), dtype=np.float32),
            axis=1,
        )
        if examples
        else np.zeros(0)
    )
    citation_hits, refusal_hits, rows = [], [], []
    for example, answer, similarity in zip(examples, answers, similarities, strict=True):
        cited = cited_numbers(answer)
        refused = refuses(answer)
        refusal_hits.append(refused != example.answerable)
        if example.answerable:
            reference = cited_numbers(example.answer)
            citation_hits.append(
                bool(cited)
                and cited <= set(example.available_citations)
                and (not reference or bool(cited & reference))
            )
        rows.append(
            {
                "id": example.id,
                "question": example.question[:500],
                "answer": answer,
                "similarity": round(float(similarity), 4),
                "cited": sorted(cited),
                "refused": refused,
                "answerable": example.answerable,
            }
        )
    metrics: dict[str, float] = {}
    if examples:
        metrics["answer_similarity"] = round(float(np.mean(similarities)), 4)
        metrics["refusal_accuracy"] = round(float(np.mean(refusal_hits)), 4)
    if citation_hits:
        metrics["citation_accuracy"] = round(float(np.mean(citation_hits)), 4)
    present = [metrics[m] for m in METRICS if m in metrics]
    metrics["score"] = round(float(np.mean(present)), 4) if present else 0.0
    return EvalResult(metrics, rows, time.perf_counter() - started)


def is_better(candidate: dict[str, float], baseline: dict[str, float]) -> tuple[bool, str]:
    """Whether the candidate wins the gate, and why, in words for the run's record."""
    for name in METRICS:
        if name in candidate and name in baseline and candidate[name] < baseline[name] - MAX_DROP:
            return False, f"{name} fell from {baseline[name]:.3f} to {candidate[name]:.3f}"
    gain = candidate.get("score", 0.0) - baseline.get("score", 0.0)
    if gain < MIN_GAIN:
        return False, f"score {candidate.get('score', 0):.3f} vs {baseline.get('score', 0):.3f}: not better"
    return True, f"score {baseline.get('score', 0):.3f} -> {candidate.get('score', 0):.3f}"

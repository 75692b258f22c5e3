"""The continuous-batching engine on the real SmolLM2: joins, leaves, limits, equality with
`model.generate`, and the prompt's context guard."""

from __future__ import annotations

import asyncio

import pytest
import torch

from answers.prompts import INSTRUCTIONS, fit_answer_messages
from inference.backends.local import LocalTextGenerator
from inference.base import GenerationParams, ModelBusy
from retrieval.search import Hit

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Name three colours.",
    "What is the capital of France?",
    "How do I reset my router?",
    "Write a haiku about tea.",
    "What is two plus two?",
    "Give me a tip for writing emails.",
    "Why is the sky blue?",
    "Suggest a name for a cat.",
]


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


async def test_eight_concurrent_streams_each_get_exactly_their_text_alone(text_generator):
    params = GenerationParams(max_tokens=16)
    alone = [(await text_generator.complete(_messages(q), params))[0] for q in QUESTIONS]

    async def streamed(question: str) -> str:
        generation = text_generator.stream(_messages(question), params)
        return "".join([delta async for delta in generation])

    together = await asyncio.gather(*(streamed(q) for q in QUESTIONS))
    assert together == alone
    assert len(set(alone)) == len(alone)


async def test_requests_joining_a_running_batch_keep_their_greedy_text(text_generator):
    params = GenerationParams(max_tokens=24)
    alone = [(await text_generator.complete(_messages(q), params))[0] for q in QUESTIONS[:3]]
    first = asyncio.ensure_future(text_generator.complete(_messages(QUESTIONS[0]), params))
    await asyncio.sleep(0.3)  # the first is decoding when the others arrive
    rest = [text_generator.complete(_messages(q), params) for q in QUESTIONS[1:3]]
    results = await asyncio.gather(first, *rest)
    assert [text for text, _ in results] == alone


async def test_a_shared_system_message_is_prefilled_once_and_changes_no_output(text_generator):
    engine = text_generator.engine
    params = GenerationParams(max_tokens=16)

    def messages(question: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": question}]

    uncached = []
    for question in QUESTIONS[:4]:
        engine.prefixes.clear()  # each computes the prefix itself
        uncached.append((await text_generator.complete(messages(question), params))[0])
    hits = engine.prefix_hits
    together = await asyncio.gather(*(text_generator.complete(messages(q), params) for q in QUESTIONS[:4]))
    assert [text for text, _ in together] == uncached
    assert engine.prefix_hits - hits == 4
    assert list(engine.prefixes) == [tuple(engine._encode_system(INSTRUCTIONS))]


def test_greedy_engine_output_equals_transformers_generate(text_generator):
    # With the float weights: the quantised ones (the CPU default) are a different model to the
    # bit, checked against this one in tests/test_quantised.py.
    from inference.engine.scheduler import Engine
    from inference.runtime import model_thread
    from tests.conftest import chat_model_dir

    engine = model_thread().call(Engine, chat_model_dir(), weights="bf16", slots=4)
    prompt = engine.encode_chat(_messages(QUESTIONS[2]))
    tokens: list[int] = []
    request = engine.submit(prompt, GenerationParams(max_tokens=20), lambda kind, value: None)
    request.listener = lambda kind, value: tokens.append(value) if kind == "token" else None

    def run() -> None:
        while not request.finished:
            engine.step()

    model_thread().call(run)
    with torch.inference_mode():
        reference = model_thread().call(
            engine.model.generate, torch.tensor([prompt]), max_new_tokens=20, do_sample=False
        )
    expected = reference[0, len(prompt) :].tolist()
    expected = [t for t in expected if t not in engine.stop_ids]
    assert tokens == expected[: len(tokens)] and len(tokens) >= min(len(expected), 20)


async def test_seeded_sampling_is_repeatable(text_generator):
    params = GenerationParams(max_tokens=12, temperature=0.9, top_p=0.9, seed=7)
    first, _ = await text_generator.complete(_messages(QUESTIONS[5]), params)
    second, _ = await text_generator.complete(_messages(QUESTIONS[5]), params)
    assert first == second


@pytest.fixture
def one_slot_generator(settings, text_generator):
    """A second engine on the same weights folder with one row and no queue."""
    settings.INFERENCE_MAX_CONCURRENT = 1
    settings.INFERENCE_QUEUE_DEPTH = 0
    return LocalTextGenerator()


async def test_a_full_engine_refuses_at_once_with_busy(one_slot_generator):
    generation = one_slot_generator.stream(_messages(QUESTIONS[0]), GenerationParams(max_tokens=300))
    iterator = generation.__aiter__()
    await iterator.__anext__()
    with pytest.raises(ModelBusy):
        await one_slot_generator.complete(_messages(QUESTIONS[1]), GenerationParams(max_tokens=4))
    await iterator.aclose()


async def test_a_client_leaving_mid_stream_frees_its_row_for_the_next_request(one_slot_generator):
    generation = one_slot_generator.stream(_messages(QUESTIONS[0]), GenerationParams(max_tokens=300))
    iterator = generation.__aiter__()
    for _ in range(3):
        await iterator.__anext__()
    await iterator.aclose()
    assert generation.usage.finish_reason == "cancelled" and generation.usage.completion_tokens >= 3
    # Accepted at once, and answered.
    text, usage = await one_slot_generator.complete(_messages(QUESTIONS[1]), GenerationParams(max_tokens=8))
    assert text and usage.finish_reason in ("stop", "length")
    assert one_slot_generator.active_requests == 0


async def test_max_tokens_is_capped_and_reported_as_length(text_generator):
    text, usage = await text_generator.complete(
        _messages("Count from one to one hundred in words."), GenerationParams(max_tokens=5)
    )
    assert usage.completion_tokens == 5 and usage.finish_reason == "length"


def _hit(n: int, document: int, words: int) -> Hit:
    return Hit(
        chunk_id=n,
        document_id=document,
        title=f"Doc {document}",
        url="",
        section="",
        anchor="",
        text=" ".join(["router"] * words),
        score=1.0 / n,
    )


def test_context_guard_trims_history_then_lowest_ranked_chunks_but_never_the_question():
    hits = [_hit(1, 1, 300), _hit(2, 2, 300), _hit(3, 1, 300), _hit(4, 3, 300)]
    history = [("user", "old " * 200), ("assistant", "older " * 200)]
    question = "How do I reset the router? " * 5

    def count(text: str) -> int:
        return len(text.split())

    messages, sources = fit_answer_messages(question, hits, history, count_tokens=count, budget=800)
    assert messages[-1]["content"] == question
    assert len(messages) == 3  # instructions, sources, question: history went first
    kept = [hit.chunk_id for source in sources for hit in source.hits]
    assert kept == [1, 2]  # chunks 3 and 4, the lowest ranked, went next
    assert sum(count(m["content"]) + 8 for m in messages) <= 800
    everything, _ = fit_answer_messages(question, hits, history, count_tokens=count, budget=10_000)
    assert len(everything) == 5

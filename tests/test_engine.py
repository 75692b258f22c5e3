"""The local text generator and embedder on the real small models."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from inference.backends.local import StopStringFilter
from inference.base import GenerationParams, InputTooLong
from inference.engine.decoding import IncrementalDecoder

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Name three colours."}]


async def test_greedy_generation_is_repeatable_and_reports_usage(text_generator):
    params = GenerationParams(max_tokens=12)
    first, usage = await text_generator.complete(MESSAGES, params)
    second, _ = await text_generator.complete(MESSAGES, params)
    assert first and first == second
    assert usage.completion_tokens <= 12 and usage.prompt_tokens > 5
    assert usage.model_version == text_generator.model_version
    assert usage.finish_reason in ("stop", "length")


async def test_concurrent_streams_each_get_their_own_greedy_answer(text_generator):
    params = GenerationParams(max_tokens=10)
    alone, _ = await text_generator.complete(MESSAGES, params)
    other = [{"role": "user", "content": "What is the capital of France?"}]
    together = await asyncio.gather(
        text_generator.complete(MESSAGES, params), text_generator.complete(other, params)
    )
    assert together[0][0] == alone


async def test_stop_string_cuts_the_answer(text_generator):
    full, _ = await text_generator.complete(MESSAGES, GenerationParams(max_tokens=16))
    word = full.split()[1]
    cut, usage = await text_generator.complete(MESSAGES, GenerationParams(max_tokens=16, stop=(word,)))
    assert word not in cut and full.startswith(cut)
    assert usage.finish_reason == "stop"


async def test_closing_a_stream_early_frees_its_slot(text_generator):
    generation = text_generator.stream(MESSAGES, GenerationParams(max_tokens=200))
    async for _ in generation:
        break
    await generation.deltas.aclose()
    assert generation.usage.finish_reason == "cancelled"
    assert text_generator.active_requests == 0


async def test_overlong_prompt_is_refused_with_a_clear_error(text_generator):
    huge = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(InputTooLong, match="limit"):
        await text_generator.complete(huge, GenerationParams(max_tokens=4))


def test_incremental_decoding_matches_decoding_all_at_once(text_generator):
    tokenizer = text_generator.engine.tokenizer
    text = "Café – naïve 東京 🚀 résumé, twice:  spaces."
    ids = tokenizer.encode(text, add_special_tokens=False)
    decoder = IncrementalDecoder(tokenizer)
    assert "".join(decoder.push(i) for i in ids) == tokenizer.decode(ids)


def test_stop_filter_finds_a_stop_string_split_across_pieces():
    stop = StopStringFilter(("END",))
    out = []
    for piece in ["Hello E", "N", "D more"]:
        text, stopped = stop.feed(piece)
        out.append(text)
        if stopped:
            break
    assert "".join(out) == "Hello " and stopped


def test_embeddings_are_normalised_float32_and_semantic(embedder):
    vectors = embedder.embed(["reset the router", "restart the modem", "bake a cake"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.embed([]).shape == (0, embedder.dim)

"""Inference engine throughput: Parley's continuous-batching engine versus `model.generate`.

    python benchmarks/inference_bench.py [--streams 1 4 8 16] [--prompt-tokens 800]
        [--new-tokens 128] [--baseline-requests 8] [--repeats 3] [--model smollm2|llama3-8b-random]
        [--weights auto|bf16|int8|int4] [--llamacpp]

In one process, same model and prompts: ≈800-token grounded prompts (the answer template's
instructions plus passages of the public evaluation corpus, ../shared/data/negconstraint-dev, and
one of its queries, in the answer prompt's layout), 128 new tokens each (end of sequence ignored,
so every request generates the same number of tokens).
- baseline: sequential `model.generate` per request (greedy, the transformers default path);
- Parley: N requests submitted at once to the engine through the TextGenerator interface, for
  each N in --streams (the engine has max(--streams) rows), after one warm-up answer, so the
  instructions every answer shares are in the engine's prefix cache, as on a running server.
Printed per row: aggregate generated tokens/s (all tokens / wall time from the first submit to
the last token), time to first token p50/p95, ratio of tokens/s to the baseline, peak RSS (and
peak CUDA memory on a GPU). The whole set (baseline, then each N) runs --repeats times in turn, so
drift in the machine's speed hits every row alike; each figure is the median over the repeats,
and the tokens/s range is printed beside it. `--llamacpp` also runs llama.cpp's
`llama-batched-bench` on the GGUF the chat model came from, once per repeat between Parley's rows
(benchmarks/llamacpp.py builds it from the llama-cpp-python source package on first use), and
prints Parley / llama.cpp per stream count: only same-run ratios mean anything on these machines.
`--weights` picks CHAT_WEIGHTS for the run. `--model llama3-8b-random` builds a Llama-3-8B-shaped model with
random weights (bf16, CUDA only): its tokens are meaningless, its speed is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import llamacpp
from _common import REPO, PeakRSS, setup_django, table

DATA = REPO.parent / "shared" / "data" / "negconstraint-dev"


def build_prompts(engine, count: int, prompt_tokens: int) -> list[list[dict[str, str]]]:
    """`count` distinct grounded chat prompts of about `prompt_tokens` tokens each."""
    from answers.prompts import INSTRUCTIONS

    passages = [json.loads(line)["text"] for line in (DATA / "corpus.jsonl").open()]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()]
    prompts, cursor = [], 0
    for i in range(count):
        question = queries[i % len(queries)]
        sources: list[str] = []
        fitting: list[dict[str, str]] = []
        while True:
            candidate = sources + [f"[{len(sources) + 1}] {passages[cursor % len(passages)]}"]
            messages = [  # the answer prompt's layout (answers/prompts.py)
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "system", "content": "Sources:\n\n" + "\n\n".join(candidate)},
                {"role": "user", "content": question},
            ]
            if len(engine.encode_chat(messages)) > prompt_tokens and sources:
                break
            sources, fitting, cursor = candidate, messages, cursor + 1
        prompts.append(fitting)
    return prompts


def baseline(engine, prompts, new_tokens: int) -> dict:
    """Sequential `model.generate`, one request after another, on the model thread."""
    import torch

    from inference.runtime import model_thread

    model = engine.model

    def one(messages) -> tuple[float, float, int]:
        ids = torch.tensor([engine.encode_chat(messages)], device=engine.device)
        started = time.perf_counter()
        with torch.inference_mode():
            # TTFT of generate: a 1-token generate of the same prompt (generate has no stream hook
            # that would not itself slow it down).
            model.generate(ids, max_new_tokens=1, do_sample=False)
            first = time.perf_counter() - started
            begun = time.perf_counter()
            out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        return first, time.perf_counter() - begun, out.shape[1] - ids.shape[1]

    model_thread().call(one, prompts[0])  # warm-up
    firsts, seconds, tokens = [], 0.0, 0
    with PeakRSS() as rss:
        for messages in prompts:
            first, total, n = model_thread().call(one, messages)
            firsts.append(first)
            seconds += total
            tokens += n
    return {"tokens_s": tokens / seconds, "ttft": firsts, "peak": rss.peak_mib, "tokens": tokens}


def parley(generator, prompts, new_tokens: int) -> dict:
    from inference.base import GenerationParams

    params = GenerationParams(max_tokens=new_tokens, ignore_eos=True)

    async def one(messages, started: float) -> tuple[float, int]:
        first = None
        generation = generator.stream(messages, params)
        async for _ in generation:
            if first is None:
                first = time.perf_counter() - started
        return first, generation.usage.completion_tokens

    async def run() -> tuple[list[tuple[float, int]], float]:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(m, started) for m in prompts))
        return results, time.perf_counter() - started

    with PeakRSS() as rss:
        results, wall = asyncio.run(run())
    tokens = sum(n for _, n in results)
    firsts = [f for f, _ in results]
    # Decode rate once every stream has its first token: generated tokens after the first / time.
    decode = (tokens - len(prompts)) / max(wall - max(firsts), 1e-9)
    return {
        "tokens_s": tokens / wall,
        "ttft": firsts,
        "peak": rss.peak_mib,
        "tokens": tokens,
        "decode": decode,
    }


SERVING = """
import asyncio, resource, sys
sys.path.insert(0, {here!r})
from _common import setup_django
setup_django()
from inference.base import GenerationParams
from inference.services import get_embedder, get_text_generator
generator, embedder = get_text_generator(), get_embedder()
embedder.embed(["How long does a refund take?"] * 8)
messages = [{{"role": "user", "content": "How do I reset my router?"}}]
asyncio.run(generator.complete(messages, GenerationParams(max_tokens=32)))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def serving_rss() -> int:
    """Peak RSS (MiB) of a fresh process that serves as `inference_server` does: Django, the chat
    model (CHAT_WEIGHTS as set) and the embedder loaded, one answer and one embedding made."""
    import subprocess
    import sys

    here = str(REPO / "benchmarks")
    out = subprocess.run(
        [sys.executable, "-c", SERVING.format(here=here)],
        capture_output=True,
        text=True,
        check=True,
        cwd=here,
    )
    return int(out.stdout.strip().splitlines()[-1])


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def llama3_8b_random(path) -> None:
    """Write a Llama-3-8B-shaped model with random bf16 weights (and SmolLM2's tokenizer)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    from django.conf import settings

    AutoTokenizer.from_pretrained(settings.CHAT_MODEL).save_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--prompt-tokens", type=int, default=800)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=["smollm2", "llama3-8b-random"], default="smollm2")
    parser.add_argument(
        "--weights", choices=["auto", "bf16", "int8", "int4"], help="CHAT_WEIGHTS for this run"
    )
    parser.add_argument("--llamacpp", action="store_true", help="run llama.cpp in the same invocation")
    args = parser.parse_args()

    import os

    if args.weights:
        os.environ["CHAT_WEIGHTS"] = args.weights
    os.environ["INFERENCE_MAX_CONCURRENT"] = str(max(args.streams))
    os.environ.setdefault("INFERENCE_QUEUE_DEPTH", "0")
    setup_django()
    import torch
    from django.conf import settings

    from inference.backends.local import LocalTextGenerator

    model_dir = settings.CHAT_MODEL
    if args.model == "llama3-8b-random":
        if not torch.cuda.is_available():
            raise SystemExit("llama3-8b-random needs a CUDA device")
        model_dir = str(settings.MODELS_DIR / "llama3-8b-random")
        if not (settings.MODELS_DIR / "llama3-8b-random" / "config.json").exists():
            llama3_8b_random(model_dir)
    generator = LocalTextGenerator(model_dir)
    engine = generator.engine
    prompts = build_prompts(engine, max(max(args.streams), args.baseline_requests), args.prompt_tokens)
    sizes = [len(engine.encode_chat(p)) for p in prompts]
    device_name = torch.cuda.get_device_name() if engine.device.type == "cuda" else "CPU"
    print(
        f"model {args.model} on {engine.device} ({device_name}),"
        f" dtype {engine.dtype}, weights {engine.weights}, torch threads {torch.get_num_threads()},"
        f" engine rows {engine.slots};"
        f" prompts {min(sizes)}-{max(sizes)} tokens (mean {statistics.mean(sizes):.0f}),"
        f" {args.new_tokens} new tokens each",
        flush=True,
    )

    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    asyncio.run(_warm(generator))
    runs: dict[str | int, list[dict]] = {}
    llama: list[list[llamacpp.Result]] = []
    llama_peak = 0.0
    for repeat in range(args.repeats):
        if args.llamacpp:
            results, peak = llamacpp.run(
                settings.MODELS_DIR,
                streams=args.streams,
                prompt_tokens=round(statistics.mean(sizes)),
                new_tokens=args.new_tokens,
                threads=torch.get_num_threads(),
            )
            llama.append(results)
            llama_peak = max(llama_peak, peak)
            speeds = ", ".join(f"{r.streams}: {r.tokens_s:.1f}" for r in results)
            print(f"[{repeat + 1}/{args.repeats}] llama.cpp tok/s by streams: {speeds}", flush=True)
        base = baseline(engine, prompts[: args.baseline_requests], args.new_tokens)
        runs.setdefault("baseline", []).append(base)
        print(f"[{repeat + 1}/{args.repeats}] baseline: {base['tokens_s']:.1f} tok/s", flush=True)
        for streams in args.streams:
            result = parley(generator, prompts[:streams], args.new_tokens)
            assert result["tokens"] == streams * args.new_tokens, result["tokens"]
            runs.setdefault(streams, []).append(result)
            print(
                f"[{repeat + 1}/{args.repeats}] {streams} streams: {result['tokens_s']:.1f} tok/s"
                f" (prefix cache: {engine.prefix_hits} hits, {engine.prefix_misses} misses so far)",
                flush=True,
            )
    base_speed = statistics.median(r["tokens_s"] for r in runs["baseline"])
    rows = [
        _row(f"model.generate, sequential ({args.baseline_requests} requests)", runs["baseline"], base_speed)
    ]
    for streams in args.streams:
        label = f"Parley engine, {streams} concurrent stream{'s' if streams > 1 else ''}"
        rows.append(_row(label, runs[streams], base_speed))
    for i, streams in enumerate(args.streams if llama else []):
        label = f"llama.cpp, {streams} concurrent stream{'s' if streams > 1 else ''}"
        results = [run[i] for run in llama]
        speeds = [r.tokens_s for r in results]
        rows.append(
            [
                label,
                statistics.median(speeds),
                f"{min(speeds):.1f}-{max(speeds):.1f}",
                statistics.median(r.prompt_s for r in results),
                statistics.median(r.prompt_s for r in results),
                statistics.median(speeds) / base_speed,
                llama_peak,
                statistics.median(r.decode_tokens_s for r in results),
            ]
        )
    headers = [
        "run",
        "tokens/s",
        "range",
        "TTFT p50 s",
        "TTFT p95 s",
        "vs baseline",
        "peak RSS MiB",
        "decode tok/s",
    ]
    print()
    print(table(headers, rows))
    if llama:
        rss = serving_rss()
        print()
        print(
            f"peak RSS: a serving process (chat model, weights {engine.weights}, and embedder) {rss} MiB;"
            f" llama.cpp (chat model alone, {max(args.streams)} streams) {llama_peak:.0f} MiB:"
            f" {rss / llama_peak:.1f}x"
        )
        print()
        compare = []
        for i, streams in enumerate(args.streams):
            theirs = statistics.median(run[i].tokens_s for run in llama)
            ours = statistics.median(r["tokens_s"] for r in runs[streams])
            their_decode = statistics.median(run[i].decode_tokens_s for run in llama)
            our_decode = statistics.median(r["decode"] for r in runs[streams])
            compare.append(
                [streams, theirs, ours, ours / theirs, their_decode, our_decode, our_decode / their_decode]
            )
        headers = [
            "streams",
            "llama.cpp tok/s",
            "Parley tok/s",
            "Parley / llama.cpp",
            "llama.cpp decode tok/s",
            "Parley decode tok/s",
            "decode ratio",
        ]
        print(table(headers, compare))
    if engine.device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def _row(label: str, results: list[dict], base_speed: float) -> list:
    """Medians over the repeats of one configuration."""
    speeds = [r["tokens_s"] for r in results]
    speed = statistics.median(speeds)
    return [
        label,
        speed,
        f"{min(speeds):.1f}-{max(speeds):.1f}",
        statistics.median(percentile(r["ttft"], 0.5) for r in results),
        statistics.median(percentile(r["ttft"], 0.95) for r in results),
        speed / base_speed,
        max(r["peak"] for r in results),
        statistics.median(r.get("decode", 0.0) for r in results),
    ]


async def _warm(generator) -> None:
    """One short answer with the answer prompt's instructions, as a running server has given
    before any measured request: the instructions' keys/values are then in the prefix cache."""
    from answers.prompts import INSTRUCTIONS
    from inference.base import GenerationParams

    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "Hello"}]
    await generator.complete(messages, GenerationParams(max_tokens=4))


if __name__ == "__main__":
    main()

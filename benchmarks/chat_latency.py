"""Chat latency: Parley's answer path versus a bare `model.generate` on the same prompt.

    python benchmarks/chat_latency.py [--max-new-tokens 128] [--anchor] [--dtype float32 bfloat16]

Part 1 (demo questions): for each question the full Parley path runs (retrieval over the demo
knowledge base, prompt, streamed generation through the TextGenerator interface); then the bare
baseline, `model.generate` with the same prompt and the same greedy settings, in this process.
Part 2 (--anchor): the speed-anchor shape, an 800-token prompt and 128 new tokens, per dtype.
Figures: time to first token (TTFT), decode tokens/s after the first token, peak RSS. Run on an
otherwise idle machine; the README of benchmarks/ and RESULTS.md hold recorded figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _common import REPO, PeakRSS, setup_django, table

QUESTIONS = [
    "How do I factory reset my router?",
    "How much does the Gigabit plan cost?",
    "What are your opening hours?",
    "How long does a refund take?",
    "I'm moving house next month. What do I need to do?",
]


def parley_run(generator, messages, max_new: int, penalty: float) -> dict:
    from inference.base import GenerationParams

    async def go():
        started = time.perf_counter()
        first = None
        generation = generator.stream(
            messages, GenerationParams(max_tokens=max_new, repetition_penalty=penalty)
        )
        async for _ in generation:
            if first is None:
                first = time.perf_counter() - started
        return first, time.perf_counter() - started, generation.usage

    with PeakRSS() as rss:
        first, total, usage = asyncio.run(go())
    n = usage.completion_tokens
    return {
        "ttft": first,
        "total": total,
        "tokens": n,
        "prompt": usage.prompt_tokens,
        "decode": (n - 1) / (total - first) if n > 1 else 0.0,
        "peak": rss.peak_mib,
    }


def baseline_run(
    model, tokenizer, messages, max_new: int, penalty: float, *, force_length: bool = False
) -> dict:
    """Bare transformers: one generate() for TTFT (1 token), one for the whole answer."""
    import torch

    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    kwargs = {"do_sample": False, "repetition_penalty": penalty, "pad_token_id": tokenizer.eos_token_id}
    with PeakRSS() as rss, torch.inference_mode():
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=1, **kwargs)
        first = time.perf_counter() - started
        started = time.perf_counter()
        out = model.generate(
            ids, max_new_tokens=max_new, min_new_tokens=max_new if force_length else 0, **kwargs
        )
        total = time.perf_counter() - started
    n = out.shape[1] - ids.shape[1]
    return {
        "ttft": first,
        "total": total,
        "tokens": n,
        "prompt": ids.shape[1],
        "decode": (n - 1) / (total - first) if n > 1 else 0.0,
        "peak": rss.peak_mib,
    }


def load_baseline(dtype_name: str):
    import torch
    from django.conf import settings
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(settings.CHAT_MODEL)
    model = AutoModelForCausalLM.from_pretrained(
        settings.CHAT_MODEL, dtype=getattr(torch, dtype_name), attn_implementation="sdpa"
    ).eval()
    return model, tokenizer


def load_parley(dtype_name: str):
    from django.test import override_settings

    from inference.backends.local import LocalTextGenerator

    with override_settings(CHAT_DTYPE=dtype_name, INFERENCE_MAX_INPUT_TOKENS=4096):
        return LocalTextGenerator()


def demo_questions(args) -> None:
    from django.conf import settings

    from answers.prompts import build_answer_messages, number_sources
    from inference.runtime import model_thread
    from retrieval.actions.ingest import do_ingest_path
    from retrieval.search import search

    do_ingest_path(REPO / "demo")
    dtype = args.dtype[0]
    parley = load_parley(dtype)
    model, tokenizer = load_baseline(dtype)
    penalty = settings.CHAT_REPETITION_PENALTY
    rows, ratios = [], []
    for question in QUESTIONS:
        started = time.perf_counter()
        sources = number_sources(search(question, k=settings.CHAT_RETRIEVAL_K))
        retrieval = time.perf_counter() - started
        messages = build_answer_messages(question, sources, [])
        p = parley_run(parley, messages, args.max_new_tokens, penalty)
        # Same OS thread as Parley's model work: see inference/runtime.py for why that matters.
        b = model_thread().call(baseline_run, model, tokenizer, messages, args.max_new_tokens, penalty)
        ratios.append(p["decode"] / b["decode"])
        rows.append(
            [
                question[:34],
                p["prompt"],
                f"{retrieval * 1000:.0f} ms",
                p["ttft"] + retrieval,
                b["ttft"],
                p["decode"],
                b["decode"],
                p["tokens"],
                b["tokens"],
                p["peak"],
                b["peak"],
            ]
        )
    print(
        f"\nDemo questions ({dtype}, greedy, max {args.max_new_tokens} new tokens, "
        f"repetition penalty {penalty}); Parley TTFT includes retrieval"
    )
    print(
        table(
            [
                "question",
                "prompt tok",
                "retrieval",
                "TTFT s Parley",
                "TTFT s generate",
                "decode tok/s Parley",
                "decode tok/s generate",
                "tokens P",
                "tokens g",
                "peak MiB P",
                "peak MiB g",
            ],
            rows,
        )
    )
    print(f"decode speed Parley / generate: median {statistics.median(ratios):.2f}x")


def anchor(args) -> None:
    """~800-token prompt, 128 new tokens; the baseline is forced to the full length."""
    from inference.runtime import model_thread

    rows = []
    for dtype in args.dtype:
        parley = load_parley(dtype)
        model, tokenizer = load_baseline(dtype)
        filler = "Brightline support notes: routers, plans, billing and outages are covered here. " * 80
        content = tokenizer.decode(tokenizer.encode(filler, add_special_tokens=False)[:780])
        messages = [{"role": "user", "content": content + "\nSummarise."}]
        runs = {}
        for name, run in (
            ("Parley engine", lambda m=messages, g=parley: parley_run(g, m, args.max_new_tokens, 1.0)),
            (
                "model.generate",
                lambda m=messages, mo=model, t=tokenizer: model_thread().call(
                    baseline_run, mo, t, m, args.max_new_tokens, 1.0, force_length=True
                ),
            ),
        ):
            run()  # warm-up
            runs[name] = run()
        for name, r in runs.items():
            rows.append(
                [
                    dtype,
                    name,
                    r["prompt"],
                    r["prompt"] / r["ttft"],
                    r["ttft"],
                    r["decode"],
                    r["tokens"],
                    r["peak"],
                ]
            )
        del parley, model
    print(f"\nSpeed anchor: ~800-token prompt, {args.max_new_tokens} new tokens, one stream")
    print(
        table(
            [
                "dtype",
                "engine",
                "prompt tok",
                "prefill tok/s",
                "TTFT s",
                "decode tok/s",
                "tokens",
                "peak MiB",
            ],
            rows,
        )
    )
    print(
        "Reference (same machine, task brief): llama.cpp prefill 463 tok/s, TTFT 1.7 s, decode 124 tok/s; "
        "bare generate bf16 prefill 1,605, decode 34 (fp32: 629, 25)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--anchor", action="store_true", help="also run the 800-token speed anchor")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    setup_django()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_demo:
        demo_questions(args)
    if args.anchor:
        anchor(args)


if __name__ == "__main__":
    main()

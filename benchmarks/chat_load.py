"""Load on the website chat: N simulated visitors on real websockets against `manage.py serve`
with the Redis channel layer and PostgreSQL, as a company that outgrew SQLite runs it.

    python benchmarks/chat_load.py [--visitors 50 200] [--ramp 30] [--max-tokens 48]

For each N: a fresh PostgreSQL database (demo knowledge base ingested), `serve` started on it with
REDIS_URL set, then N visitors arriving evenly over --ramp seconds, each asking one of the demo
questions and waiting for its answer. Printed per N: messages sent, messages lost (neither an
answer nor an error frame within 10 minutes: must be 0), error frames by code, time to first
token p50/p95 of answered messages, answers per minute (answers / wall time from first send to
last answer), peak RSS of the server process tree.

All simulated visitors come from 127.0.0.1, so the per-IP limits are raised for the run (on a
real site each visitor has an address of their own); everything else is the product's defaults:
8 answers generated at once, 32 more waiting, then `busy` errors with retry_after. Answers are
capped at --max-tokens (CHAT_MAX_ANSWER_TOKENS) to keep a 200-visitor run to minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How do I factory reset my router?",
    "How much is the Gigabit plan?",
    "What are your opening hours?",
    "How long does a refund take?",
    "I'm moving house next month. What do I need to do?",
    "My wifi keeps dropping, what can I try?",
    "How do I set up my new router?",
    "What do you do with my personal data?",
]
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def start_server(visitors: int, max_tokens: int) -> tuple[subprocess.Popen, str, dict, str]:
    import psycopg

    name = f"parley_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    port = _free_port()
    env = {
        **os.environ,
        "DEBUG": "1",
        "HF_HUB_OFFLINE": "1",
        "PARLEY_DATA_DIR": tempfile.mkdtemp(prefix="parley-load-"),
        "PARLEY_MODELS_DIR": str(REPO / "var" / "models"),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
        "REDIS_URL": "redis://127.0.0.1:6379/13",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/12",
        "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/12",
        "CHAT_MAX_ANSWER_TOKENS": str(max_tokens),
        "CHAT_MESSAGES_PER_MINUTE_PER_IP": str(visitors * 10),
        "CHAT_CONCURRENT_ANSWERS_PER_IP": str(visitors * 10),
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=REPO, env=env, check=True, capture_output=True)
    subprocess.run([*manage, "ingest", "demo/"], cwd=REPO, env=env, check=True, capture_output=True)
    log = open(Path(env["PARLEY_DATA_DIR"]) / "serve.log", "w")  # noqa: SIM115 - lives with the server
    server = subprocess.Popen(
        [*manage, "serve", "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return server, url, env, name
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("serve did not start")


def stop_server(server: subprocess.Popen, database: str) -> None:
    import psycopg

    server.terminate()
    server.wait(timeout=60)
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def visitor(url: str, question: str, delay: float, results: list[dict]) -> None:
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    result = {"sent": None, "first": None, "done": None, "error": None}
    results.append(result)
    ws_url = url.replace("http", "ws") + "/ws/chat/"
    try:
        async with connect(ws_url, origin=url, open_timeout=60, max_size=2**20) as socket:
            await socket.recv()  # the visitor token
            result["sent"] = time.perf_counter()
            await socket.send(json.dumps({"type": "message", "text": question}))
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=600))
                if frame["type"] == "token" and result["first"] is None:
                    result["first"] = time.perf_counter()
                elif frame["type"] == "done":
                    result["done"] = time.perf_counter()
                    return
                elif frame["type"] == "error":
                    result["error"] = frame["code"]
                    return
    except (TimeoutError, OSError, Exception) as exc:  # noqa: BLE001 - any failure is a lost message
        result["error"] = result["error"] or f"lost:{type(exc).__name__}"


def rss_tree_mib(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


async def run(url: str, visitors: int, ramp: float, server_pid: int) -> dict:
    results: list[dict] = []
    peak = 0.0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_tree_mib(server_pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    await asyncio.gather(
        *(visitor(url, QUESTIONS[i % len(QUESTIONS)], ramp * i / visitors, results) for i in range(visitors))
    )
    sampler.cancel()
    answered = [r for r in results if r["done"]]
    lost = [r for r in results if not r["done"] and not (r["error"] and not r["error"].startswith("lost"))]
    ttft = sorted(r["first"] - r["sent"] for r in answered if r["first"])
    wall = max((r["done"] for r in answered), default=time.perf_counter()) - started
    return {
        "sent": sum(1 for r in results if r["sent"]),
        "answered": len(answered),
        "lost": len(lost),
        "errors": Counter(r["error"] for r in results if r["error"]),
        "ttft_p50": statistics.median(ttft) if ttft else None,
        "ttft_p95": ttft[min(len(ttft) - 1, round(0.95 * (len(ttft) - 1)))] if ttft else None,
        "per_minute": len(answered) / wall * 60 if answered else 0.0,
        "peak": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visitors", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--ramp", type=float, default=30.0, help="seconds over which visitors arrive")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    rows = []
    for n in args.visitors:
        server, url, _, database = start_server(n, args.max_tokens)
        try:
            # One answer first, so the model is loaded before the clock starts (as on a running site).
            asyncio.run(run(url, 1, 0, server.pid))
            result = asyncio.run(run(url, n, args.ramp, server.pid))
        finally:
            stop_server(server, database)
        errors = ", ".join(f"{code} {count}" for code, count in sorted(result["errors"].items())) or "none"
        rows.append(
            [
                n,
                result["sent"],
                result["lost"],
                result["answered"],
                errors,
                f"{result['ttft_p50']:.2f}" if result["ttft_p50"] is not None else "-",
                f"{result['ttft_p95']:.2f}" if result["ttft_p95"] is not None else "-",
                f"{result['per_minute']:.1f}",
                f"{result['peak']:,.0f}",
            ]
        )
        print(f"{n} visitors: {rows[-1]}", flush=True)
    headers = ["visitors", "sent", "lost", "answered", "error frames", "TTFT p50 s", "TTFT p95 s",
               "answers/min", "peak RSS MiB"]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    print()
    for line in [headers, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()

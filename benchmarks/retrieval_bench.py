"""Knowledge-base speed: ingestion throughput, vector-index latency and recall, memory.

    python benchmarks/retrieval_bench.py [--sizes 10000 100000 1000000] [--passages 3946]
                                         [--skip-ingest | --ingest-only] [--nprobe 8 16 32 64]
                                         [--noise 0.03]

(a) Ingestion: every passage of the public evaluation corpus (../shared/data/negconstraint-dev,
    3,946 passages) written as one text file and ingested with `do_ingest_path` (parse, chunk,
    embed with the configured embedder, store, index) into a throwaway data directory. Baseline,
    in this process: a bare sentence-transformers `encode` of the same passages (its defaults);
    also the embedder alone on all passages in one call, with each backend.
(b) Query latency, one query at a time through `VectorIndex.search` (the model-thread hop
    included), p50/p95 over the corpus's real queries, and recall@10 against exact search, at
    each size: the real chunk embeddings from (a), enlarged to N vectors by adding Gaussian noise
    (sigma --noise per dimension) to randomly chosen ones and re-normalising. Exact index vs the
    approximate one (IVF above INDEX_APPROX_THRESHOLD), plus an nprobe sweep.
(c) Memory: resident-memory growth of a process loading the index file, and the file size,
    both per million vectors.
A full run takes ~6-7 minutes on the 2-core dev machine and peaks at ~7.5 GB of memory (1M).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, setup_django, table

CORPUS = REPO.parent / "shared" / "data" / "negconstraint-dev"


def passages(limit: int) -> list[tuple[str, str]]:
    """(title, text) of the corpus passages."""
    rows = [json.loads(line) for line in (CORPUS / "corpus.jsonl").open()][:limit]
    return [(row.get("title", "").strip(), row["text"].strip()) for row in rows]


def queries() -> list[str]:
    return [json.loads(line)["text"] for line in (CORPUS / "queries.jsonl").open()]


def ingestion(args) -> np.ndarray:
    """Part (a). Returns the chunk embeddings stored by the ingestion. (n, dim)"""
    from django.conf import settings
    from sentence_transformers import SentenceTransformer

    from inference.prepare import embedding_model_path
    from inference.runtime import model_thread
    from inference.services import get_embedder
    from retrieval.actions.ingest import do_ingest_path
    from retrieval.models import Chunk

    docs = passages(args.passages)
    texts = [f"{title} {text}".strip() for title, text in docs]
    load_before = os.getloadavg()
    bare = model_thread().call(
        lambda: SentenceTransformer(
            str(embedding_model_path(settings.EMBEDDING_MODEL)), device="cpu", local_files_only=True
        )
    )
    embedder = get_embedder()
    model_thread().call(bare.encode, texts[:32], show_progress_bar=False)  # warm-up
    embedder.embed(texts[:32])

    started = time.perf_counter()
    reference = model_thread().call(bare.encode, texts, normalize_embeddings=True, show_progress_bar=False)
    bare_seconds = time.perf_counter() - started

    # The embedder alone, all passages in one call: the chosen backend and plain torch.
    from inference.backends.local import LocalEmbedder

    alone = []
    for candidate in (LocalEmbedder(backend="torch"), embedder):
        candidate.embed(texts[:32])
        started = time.perf_counter()
        candidate.embed(texts)
        alone.append((candidate, time.perf_counter() - started))

    folder = Path(tempfile.mkdtemp(prefix="parley-bench-corpus-"))
    for i, (title, text) in enumerate(docs):
        (folder / f"{i:05d}.txt").write_text(f"{title}\n\n{text}\n" if title else f"{text}\n")
    started = time.perf_counter()
    results = do_ingest_path(folder, collection="bench")
    ingest_seconds = time.perf_counter() - started
    chunks = sum(r.chunks for r in results)

    sample = min(200, len(texts))
    ours = embedder.embed(texts[:sample])
    cosine = np.sum(ours * reference[:sample], axis=1)  # (sample,)
    print(f"\n(a) Ingestion of {len(docs)} passages ({chunks} chunks), embedder {embedder.model_version}")
    print(
        "load average (1, 5, 15 min) before part (a) {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}; "
        "other processes sharing the CPU slow every row, so compare ratios".format(
            *load_before, *os.getloadavg()
        )
    )
    print(
        table(
            ["path", "seconds", "passages/s", "vs bare encode"],
            [
                ["bare sentence-transformers encode (baseline)", bare_seconds, len(docs) / bare_seconds, 1.0],
                *(
                    [
                        f"Parley embedder alone, {candidate.backend} (batch {candidate.batch_size})",
                        seconds,
                        len(docs) / seconds,
                        bare_seconds / seconds,
                    ]
                    for candidate, seconds in alone
                ),
                [
                    "Parley ingestion (parse, chunk, embed, store, index)",
                    ingest_seconds,
                    len(docs) / ingest_seconds,
                    bare_seconds / ingest_seconds,
                ],
            ],
        )
    )
    print(
        f"cosine, Parley embedder vs bare encode, first {sample} passages: "
        f"min {cosine.min():.4f}, mean {cosine.mean():.5f}"
    )
    rows = Chunk.objects.filter(document__collection="bench").values_list("embedding", flat=True)
    return np.stack([np.frombuffer(bytes(e), dtype=np.float32) for e in rows])


def corpus_vectors(args) -> np.ndarray:
    from inference.services import get_embedder

    return get_embedder().embed([f"{t} {x}".strip() for t, x in passages(args.passages)])


def enlarge(base: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """n unit vectors: the real ones, then perturbed copies of randomly chosen real ones. (n, dim)"""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    real = min(n, len(base))
    out[:real] = base[:real]
    for start in range(real, n, 100_000):
        m = min(100_000, n - start)
        x = base[rng.integers(0, len(base), m)] + noise * rng.standard_normal((m, base.shape[1]), np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latency(index, query_vectors: np.ndarray, k: int = 10) -> tuple[float, float, np.ndarray]:
    """p50 and p95 in ms of one-query searches, and the ids found. (q, k)"""
    times, found = [], []
    for q in query_vectors:
        started = time.perf_counter()
        ids, _ = index.search(q, k)
        times.append(time.perf_counter() - started)
        found.append(ids[0])
    times_ms = np.array(times) * 1000
    return float(np.percentile(times_ms, 50)), float(np.percentile(times_ms, 95)), np.array(found)


def recall_at(found: np.ndarray, truth: np.ndarray) -> str:
    value = statistics.fmean(len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True))
    return f"{value:.3f}"


def loaded_rss(path: Path) -> int:
    """Resident-memory growth of a fresh process reading the index file (this one's allocator
    would reuse memory freed by earlier builds and under-report)."""
    code = (
        "import sys, faiss, psutil; p = psutil.Process(); before = p.memory_info().rss; "
        "index = faiss.read_index(sys.argv[1]); print(p.memory_info().rss - before)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def hnsw_rows(vectors: np.ndarray, query_vectors: np.ndarray, truth: np.ndarray) -> list[list[object]]:
    """The alternative we did not choose: FAISS HNSW (M=32, efConstruction 40), raw, on the
    model thread like ours, at a few efSearch values."""
    import faiss

    from inference.runtime import model_thread

    class Raw:
        def __init__(self, index: faiss.Index) -> None:
            self.index = index

        def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            scores, ids = model_thread().call(self.index.search, np.ascontiguousarray(q[None]), k)
            return ids, scores

    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    started = time.perf_counter()
    for start in range(0, len(vectors), 32_768):
        model_thread().call(index.add, vectors[start : start + 32_768])
    build = time.perf_counter() - started
    rows = []
    for ef in (64, 128):
        index.hnsw.efSearch = ef
        latency(Raw(index), query_vectors[:10])
        p50, p95, found = latency(Raw(index), query_vectors)
        rows.append(
            [f"hnsw32 efSearch {ef} (not used)", len(vectors), build, p50, p95, recall_at(found, truth)]
        )
    return rows


def index_speed(args, base: np.ndarray) -> None:
    """Parts (b) and (c)."""
    from inference.services import get_embedder
    from retrieval.index import VectorIndex

    query_vectors = get_embedder().embed(queries())  # (q, dim)
    dim = base.shape[1]
    directory = Path(tempfile.mkdtemp(prefix="parley-bench-index-"))
    threshold = VectorIndex(directory, "probe", dim).approx_threshold
    rows, sweep_rows, memory_rows = [], [], []
    for n in args.sizes:
        vectors = enlarge(base, n, args.noise)
        ids = np.arange(n, dtype=np.int64)
        exact = VectorIndex(directory, f"exact{n}", dim, approx_threshold=10**12)
        started = time.perf_counter()
        exact.rebuild(ids, vectors)
        exact_build = time.perf_counter() - started
        truth, _ = exact.search(query_vectors, 10)  # (q, 10), batched: the oracle
        # One-query latency of a 1M-vector flat scan is ~0.25 s: 40 queries tell its p95 well.
        timed = query_vectors if n <= 100_000 else query_vectors[:40]
        p50, p95, found = latency(exact, timed)
        rows.append(["exact (flat)", n, exact_build, p50, p95, recall_at(found, truth[: len(timed)])])

        approx = VectorIndex(directory, f"approx{n}", dim, approx_threshold=min(threshold, n - 1))
        started = time.perf_counter()
        approx.rebuild(ids, vectors)
        approx_build = time.perf_counter() - started
        latency(approx, query_vectors[:10])  # warm-up
        p50, p95, found = latency(approx, query_vectors)
        rows.append(
            [f"{approx.kind} nprobe {approx.nprobe}", n, approx_build, p50, p95, recall_at(found, truth)]
        )
        for nprobe in args.nprobe:
            probe = VectorIndex(
                directory, f"approx{n}", dim, approx_threshold=min(threshold, n - 1), nprobe=nprobe
            )
            latency(probe, query_vectors[:10])
            p50, p95, found = latency(probe, query_vectors)
            sweep_rows.append([n, nprobe, p50, p95, recall_at(found, truth)])
            del probe
        if n <= args.hnsw_max:
            rows.extend(hnsw_rows(vectors, query_vectors, truth))
        del exact, approx, vectors
        for name, label in ((f"exact{n}", "exact (flat)"), (f"approx{n}", "approximate")):
            path = directory / f"{name}.faiss"
            grown = loaded_rss(path)
            memory_rows.append(
                [label, n, grown / 2**20, grown / n * 1e6 / 2**30, path.stat().st_size / n * 1e6 / 2**30]
            )
        for path in directory.glob(f"*{n}.*"):
            path.unlink()
        print(f"  size {n:,} done", flush=True)

    print(f"\n(b) One-query search, k=10, {len(query_vectors)} real queries; noise sigma {args.noise}")
    print(table(["index", "vectors", "build s", "p50 ms", "p95 ms", "recall@10"], rows))
    print("\nnprobe sweep (IVF)")
    print(table(["vectors", "nprobe", "p50 ms", "p95 ms", "recall@10"], sweep_rows))
    print("\n(c) Memory")
    print(table(["index", "vectors", "RSS growth MiB", "GiB per 1M (RSS)", "GiB per 1M (file)"], memory_rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--passages", type=int, default=3946)
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--skip-ingest", action="store_true", help="embed the passages without ingesting")
    parts.add_argument("--ingest-only", action="store_true", help="run part (a) only")
    parser.add_argument("--nprobe", type=int, nargs="*", default=[8, 16, 64], help="extra nprobe values")
    parser.add_argument("--noise", type=float, default=0.03, help="Gaussian sigma per dimension")
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="compare with HNSW up to this size")
    args = parser.parse_args()
    setup_django()
    import faiss
    import torch
    from django.conf import settings

    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__}, "
        f"GPUs seen by FAISS {faiss.get_num_gpus()}, "
        f"INDEX_APPROX_THRESHOLD {getattr(settings, 'INDEX_APPROX_THRESHOLD', 'default')}"
    )
    started = time.perf_counter()
    base = corpus_vectors(args) if args.skip_ingest else ingestion(args)
    if not args.ingest_only:
        index_speed(args, base)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

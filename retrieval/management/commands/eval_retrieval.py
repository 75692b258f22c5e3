"""Measure retrieval quality on a BEIR-format set: nDCG@10, recall@10 and MRR@10 per mode.

The passages are searched with the product's own ranking (`retrieval.search.retrieve`: query
handling, BM25 tokenisation and scoring, dense scores, exclusion weighting, fusion), over an
in-memory corpus instead of the database: the one difference is that dense candidates come from
an exact numpy search rather than the FAISS index. Corpus embeddings are cached under
DATA_DIR/cache, keyed by the embedding model version and the corpus file's sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pytrec_eval
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.services import get_embedder
from retrieval.bm25 import BM25Index
from retrieval.search import MODES, RankingParams, retrieve

CUTOFF = 10


class MemoryCorpus:
    """BEIR passages as a `retrieval.search.Corpus`; ids are row positions."""

    language: str | None = None

    def __init__(self, texts: list[str], matrix: np.ndarray | None) -> None:
        self.matrix = matrix  # (n, dim) L2-normalised, or None for BM25 alone
        self._lexical: BM25Index | None = None
        self.texts = texts

    def dense_top(self, vector: np.ndarray, n: int) -> tuple[list[int], list[float]]:
        assert self.matrix is not None
        # (n_passages,) cosines, exact. einsum rather than `@`: BLAS's matrix-vector product
        # starts a thread pool that fights the embedder's torch threads (2-core machine: 0.5 s
        # per query instead of 0.05 s), and this loop-based product takes well under 1 ms.
        scores = np.einsum("ij,j->i", self.matrix, vector)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top.tolist(), scores[top].astype(float).tolist()

    def lexical(self) -> BM25Index:
        if self._lexical is None:
            ids = list(range(len(self.texts)))
            self._lexical = BM25Index.build(ids, self.texts, ["en"] * len(self.texts))
        return self._lexical

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray | None]:
        return {i: (self.matrix[i] if self.matrix is not None else None) for i in ids}


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    rows = []
    with _open(path, what) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CommandError(f"{what} file {path}, line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or "_id" not in row or not isinstance(row.get("text"), str):
                raise CommandError(f'{what} file {path}, line {number}: needs "_id" and "text"')
            rows.append(row)
    if not rows:
        raise CommandError(f"{what} file {path} has no rows")
    return rows


def _open(path: Path, what: str) -> TextIO:
    try:
        return open(path, encoding="utf-8")  # noqa: SIM115 - callers use it as a context manager
    except FileNotFoundError as exc:
        raise CommandError(f"{what} file not found: {path}") from exc
    except OSError as exc:
        raise CommandError(f"{what} file {path} cannot be read: {exc.strerror}") from exc


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query-id -> {corpus-id: relevance}, from a TSV with an optional header line."""
    qrels: dict[str, dict[str, int]] = {}
    with _open(path, "qrels") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 4:  # TREC style: query-id, iteration, corpus-id, score
                fields = [fields[0], fields[2], fields[3]]
            if len(fields) != 3 or not re.fullmatch(r"-?\d+", fields[2].strip()):
                if number == 1:
                    continue  # the header ("query-id corpus-id score")
                raise CommandError(
                    f"qrels file {path}, line {number}: expected query-id, corpus-id, integer score"
                )
            qrels.setdefault(fields[0].strip(), {})[fields[1].strip()] = int(fields[2])
    if not qrels:
        raise CommandError(f"qrels file {path} has no judgements")
    return qrels


def metrics(qrels: dict[str, dict[str, int]], run: dict[str, list[str]]) -> dict[str, float]:
    """Mean nDCG@10, recall@10 and MRR@10 over the queries in `run` (ranked corpus ids).

    trec_eval's definitions through pytrec_eval: ndcg_cut_10 (graded gains = the qrels scores,
    log2 discount, ideal DCG from the qrels), recall_10 (relevant retrieved in the top 10 /
    all relevant), recip_rank on the top 10 (1 / rank of the first relevant, 0 if none). A
    query that retrieved nothing scores 0 on all three (pytrec_eval would silently skip it).
    """
    # Scores from the rank, so trec_eval's own tie-breaking cannot reorder our list.
    scored = {
        q: {d: float(CUTOFF - r) for r, d in enumerate(docs[:CUTOFF])} for q, docs in run.items() if docs
    }
    evaluator = pytrec_eval.RelevanceEvaluator(
        {q: qrels[q] for q in run}, {f"ndcg_cut.{CUTOFF}", f"recall.{CUTOFF}", "recip_rank"}
    )
    per_query = evaluator.evaluate(scored)
    names = {
        f"ndcg@{CUTOFF}": f"ndcg_cut_{CUTOFF}",
        f"recall@{CUTOFF}": f"recall_{CUTOFF}",
        f"mrr@{CUTOFF}": "recip_rank",
    }
    return {
        name: sum(per_query.get(q, {}).get(key, 0.0) for q in run) / len(run) for name, key in names.items()
    }


def corpus_embeddings(texts: list[str], corpus_path: Path) -> np.ndarray:
    embedder = get_embedder()
    digest = hashlib.sha256(corpus_path.read_bytes()).hexdigest()
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder.model_version)
    cache = Path(settings.DATA_DIR) / "cache" / f"eval-corpus-{digest[:24]}-{model}.npy"
    if cache.exists():
        cached: np.ndarray = np.load(cache)
        if cached.shape == (len(texts), embedder.dim):
            return cached
    matrix = embedder.embed(texts)  # (n, dim): the slow part, minutes on a laptop CPU
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, matrix)
    os.replace(tmp, cache)
    return matrix


class Command(BaseCommand):
    help = "Evaluate retrieval on BEIR-format files; prints one JSON object per mode."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--corpus", type=Path, required=True, help="corpus.jsonl (_id, text, optional title)"
        )
        parser.add_argument("--queries", type=Path, required=True, help="queries.jsonl (_id, text)")
        parser.add_argument("--qrels", type=Path, required=True, help="qrels TSV: query-id, corpus-id, score")
        parser.add_argument("--mode", choices=[*MODES, "all"], default="hybrid")
        # Ablation switches: measure what each step of the ranking gives.
        parser.add_argument("--no-query-handling", action="store_true", help="retrieve on the raw query")
        parser.add_argument("--exclusion-weight", type=float, default=None, help="0 = ignore exclusions")
        parser.add_argument("--fusion", choices=["zscore", "rrf"], default=None)
        parser.add_argument("--dense-weight", type=float, default=None, help="hybrid: dense share, 0..1")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        corpus = _read_jsonl(options["corpus"], "corpus")
        queries = {str(q["_id"]): q["text"] for q in _read_jsonl(options["queries"], "queries")}
        qrels = read_qrels(options["qrels"])
        judged = [q for q in queries if any(score > 0 for score in qrels.get(q, {}).values())]
        if not judged:
            raise CommandError(
                f"no query in {options['queries']} has a relevant passage in {options['qrels']}"
            )
        params = RankingParams.from_settings()
        changes: dict[str, Any] = {"query_handling": not options["no_query_handling"]}
        if options["exclusion_weight"] is not None:
            changes["exclusion_weight"] = options["exclusion_weight"]
        if options["fusion"]:
            changes["fusion"] = options["fusion"]
        if options["dense_weight"] is not None:
            changes["dense_weight"] = options["dense_weight"]
        params = dataclasses.replace(params, **changes)

        corpus_ids = [str(row["_id"]) for row in corpus]
        # The BEIR convention: a passage's title, when it has one, is part of its text.
        texts = [f"{row['title']} {row['text']}" if row.get("title") else row["text"] for row in corpus]
        modes = list(MODES) if options["mode"] == "all" else [options["mode"]]
        needs_vectors = any(m != "bm25" for m in modes)
        memory = MemoryCorpus(texts, corpus_embeddings(texts, options["corpus"]) if needs_vectors else None)
        memory.lexical()
        embedder = None
        if needs_vectors:
            embedder = get_embedder()
        self.stderr.write(
            f"setup {time.perf_counter() - started:.1f}s: {len(texts)} passages, {len(judged)} queries"
        )

        for mode in modes:
            began = time.perf_counter()
            run = {
                q: [
                    corpus_ids[r.id]
                    for r in retrieve(
                        memory, queries[q], embedder=embedder, mode=mode, k=CUTOFF, params=params
                    )
                ]
                for q in judged
            }
            scores = metrics(qrels, run)
            row = {"mode": mode, **{k: round(v, 4) for k, v in scores.items()}, "queries": len(judged)}
            row["seconds"] = round(time.perf_counter() - began, 2)
            self.stdout.write(json.dumps(row))
            sys.stdout.flush()

"""`manage.py eval_retrieval` on tiny BEIR-format sets written here, with hand-computed metrics."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import REPO

CORPUS = [
    {"_id": "d1", "title": "Orchards", "text": "Apple orchard harvest in the autumn."},
    {"_id": "d2", "text": "Banana bread recipe: banana bread with ripe banana, more banana bread tips."},
    {
        "_id": "d3",
        "text": "Bake a simple loaf of banana bread at home, a long and friendly guide for the weekend.",
    },
    {"_id": "d4", "text": "Car engine maintenance guide: oil, filters and spark plugs."},
    {"_id": "d5", "text": "Ocean tides follow the moon."},
]
QUERIES = [
    {"_id": "q1", "text": "apple orchard"},  # relevant d1 at rank 1
    {"_id": "q2", "text": "banana bread"},  # relevant d3, which d2 outranks: rank 2
    {"_id": "q3", "text": "quantum chromodynamics"},  # no shared term: nothing retrieved
    {"_id": "q4", "text": "tides and the moon"},  # graded: d5 (2) found first, d1 (1) never
    {"_id": "q5", "text": "engine oil"},  # no judgements: not evaluated
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td4\t0\nq2\td3\t1\nq3\td5\t1\nq4\td5\t2\nq4\td1\t1\n"


def write_set(tmp_path: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS) -> dict[str, Path]:
    paths = {
        "corpus": tmp_path / "corpus.jsonl",
        "queries": tmp_path / "queries.jsonl",
        "qrels": tmp_path / "qrels.tsv",
    }
    paths["corpus"].write_text("".join(json.dumps(row) + "\n" for row in corpus))
    paths["queries"].write_text("".join(json.dumps(row) + "\n" for row in queries))
    paths["qrels"].write_text(qrels)
    return paths


def run_eval(paths: dict[str, Path], *extra: str) -> list[dict]:
    out = io.StringIO()
    args = [f"--{name}={path}" for name, path in paths.items()]
    call_command("eval_retrieval", *args, *extra, stdout=out, stderr=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_bm25_metrics_match_hand_computed_values(tmp_path):
    [row] = run_eval(write_set(tmp_path), "--mode=bm25")
    # Per query (nDCG@10, recall@10, MRR@10): q1 rank 1 -> (1, 1, 1); q2 rank 2 -> (1/log2(3),
    # 1, 1/2); q3 nothing -> (0, 0, 0); q4 d5 (gain 2) at rank 1, d1 (gain 1) missing ->
    # DCG 2, ideal DCG 2 + 1/log2(3), recall 1/2, MRR 1.
    ndcg = (1 + 1 / math.log2(3) + 0 + 2 / (2 + 1 / math.log2(3))) / 4
    assert row["mode"] == "bm25"
    assert row["queries"] == 4
    assert row["ndcg@10"] == pytest.approx(ndcg, abs=1e-4)
    assert row["recall@10"] == pytest.approx((1 + 1 + 0 + 0.5) / 4, abs=1e-4)
    assert row["mrr@10"] == pytest.approx((1 + 0.5 + 0 + 1) / 4, abs=1e-4)
    assert row["seconds"] >= 0


def test_all_modes_print_one_line_each_and_cache_corpus_embeddings(tmp_path, embedder, settings):
    settings.DATA_DIR = tmp_path / "data"
    rows = run_eval(write_set(tmp_path), "--mode=all")
    assert [r["mode"] for r in rows] == ["dense", "bm25", "hybrid"]
    assert all(r["queries"] == 4 and 0 <= r["ndcg@10"] <= 1 for r in rows)
    hybrid = rows[2]
    assert hybrid["recall@10"] >= 0.5 and hybrid["mrr@10"] > 0.5  # q1 and q4 are easy for both
    [cached] = (tmp_path / "data" / "cache").glob("eval-corpus-*.npy")
    written = cached.stat().st_mtime_ns
    [again] = run_eval(write_set(tmp_path), "--mode=dense")
    assert cached.stat().st_mtime_ns == written  # the second run read the cache
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in rows[0].items() if k != "seconds"
    }


@pytest.mark.parametrize("missing", ["corpus", "queries", "qrels"])
def test_missing_file_is_an_error_naming_the_file(tmp_path, missing):
    paths = write_set(tmp_path)
    paths[missing].unlink()
    with pytest.raises(CommandError, match=f"{missing} file not found: .*{paths[missing].name}"):
        run_eval(paths, "--mode=bm25")


def test_malformed_jsonl_is_an_error_naming_file_and_line(tmp_path):
    paths = write_set(tmp_path)
    paths["queries"].write_text('{"_id": "q1", "text": "apple"}\n{"_id": "q2", "text": \n')
    with pytest.raises(CommandError, match=r"queries file .*queries.jsonl, line 2: not valid JSON"):
        run_eval(paths, "--mode=bm25")
    paths["corpus"].write_text('{"_id": "d1"}\n')
    with pytest.raises(CommandError, match=r'corpus file .*corpus.jsonl, line 1: needs "_id" and "text"'):
        run_eval(paths, "--mode=bm25")


def test_malformed_qrels_and_unjudged_queries_are_errors(tmp_path):
    paths = write_set(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(CommandError, match=r"qrels file .*qrels.tsv, line 2: expected query-id"):
        run_eval(paths, "--mode=bm25")
    paths = write_set(tmp_path, qrels="qX\td1\t1\n")
    with pytest.raises(CommandError, match="no query in .*queries.jsonl has a relevant passage"):
        run_eval(paths, "--mode=bm25")


def test_command_exits_non_zero_with_the_message_on_stderr(tmp_path):
    paths = write_set(tmp_path)
    paths["qrels"].unlink()
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "eval_retrieval",
            *(f"--{n}={p}" for n, p in paths.items()),
            "--mode=bm25",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DEBUG": "1"},
    )
    assert result.returncode != 0
    assert f"qrels file not found: {paths['qrels']}" in result.stderr
    assert result.stdout == ""

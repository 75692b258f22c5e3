"""The vector index: exact and approximate layouts against a numpy oracle, atomic writes under
kill and concurrent readers, the GPU switch, and the database check/repair around it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from retrieval import index as index_module
from retrieval.consistency import check_and_repair_all, check_index, repair
from retrieval.index import VectorIndex, get_index, gpu_count, nlist_for
from retrieval.models import Chunk, Document
from tests.conftest import REPO

DIM = 64


def clustered(n: int, *, dim: int = DIM, centres: int = 60, noise: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres, like sentence embeddings of related passages. (n, dim)"""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim), dtype=np.float32)
    x = middle[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]  # (q, k)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_nlist_is_near_sqrt_n_with_enough_training_points():
    assert nlist_for(1_000_000) == 1024
    assert nlist_for(100_000) == 256
    assert nlist_for(3000) == 64 and 3000 >= 39 * 64
    assert nlist_for(100) == 2


def test_small_collection_is_searched_exactly(tmp_path):
    vectors, ids = clustered(800), np.arange(5000, 5800)
    index = VectorIndex(tmp_path, "small", DIM, approx_threshold=1000)
    index.rebuild(ids, vectors)
    found, scores = index.search(vectors[:50], 10)
    assert index.kind == "exact"
    assert (found == exact_top(vectors[:50], ids, vectors, 10)).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)  # each vector finds itself first


def test_approximate_top_k_agrees_with_exact_numpy_search(tmp_path):
    vectors, ids = clustered(4000), np.arange(1, 4001) * 3
    queries = clustered(200, seed=7)  # not in the index
    index = VectorIndex(tmp_path, "approx", DIM, approx_threshold=1000, nprobe=32)
    index.rebuild(ids, vectors)
    assert index.kind == "ivf" and len(index) == 4000
    found, scores = index.search(queries, 10)  # (200, 10) each
    assert recall(found, exact_top(queries, ids, vectors, 10)) >= 0.95
    # IVF-Flat ranks by exact inner products: whatever it returns carries its true score.
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    true_scores = np.array([[by_id[i] @ q for i in row] for row, q in zip(found, queries, strict=True)])
    assert np.allclose(scores, true_scores, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("threshold", [10_000, 1000], ids=["exact", "ivf"])
def test_deletions_and_readds_work(tmp_path, threshold):
    vectors, ids = clustered(3000), np.arange(100, 3100)
    index = VectorIndex(tmp_path, "edits", DIM, approx_threshold=threshold)
    index.rebuild(ids, vectors)
    gone = ids[:200]
    index.replace(gone.tolist(), [], np.zeros((0, DIM), np.float32))
    assert len(index) == 2800 and not set(gone) & set(index.ids().tolist())
    found, _ = index.search(vectors[:200], 20)
    assert not set(found.ravel().tolist()) & set(gone.tolist())

    fresh = clustered(200, seed=3)
    index.replace([], gone.tolist(), fresh)  # the same ids again, with new vectors
    top, scores = index.search(fresh, 1)
    assert (top[:, 0] == gone).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    index.replace([], gone[:5].tolist(), vectors[:5])  # adding a present id replaces its vector
    assert len(index) == 3000 and (index.ids() == ids).all()
    assert index.search(vectors[:5], 1)[0][:, 0].tolist() == gone[:5].tolist()


def test_incremental_growth_switches_layout_and_back(tmp_path):
    vectors, ids = clustered(3000), np.arange(3000)
    index = VectorIndex(tmp_path, "grow", DIM, approx_threshold=2000)
    for start in range(0, 3000, 500):
        index.replace([], ids[start : start + 500].tolist(), vectors[start : start + 500])
        assert index.kind == ("exact" if start + 500 <= 2000 else "ivf")
    assert recall(index.search(vectors[:100], 10)[0], exact_top(vectors[:100], ids, vectors, 10)) >= 0.95
    index.replace(ids[:1500].tolist(), [], np.zeros((0, DIM), np.float32))  # 1,500 left: above half
    assert index.kind == "ivf"
    index.replace(ids[1500:2100].tolist(), [], np.zeros((0, DIM), np.float32))  # 900 left
    assert index.kind == "exact" and len(index) == 900
    kept = ids[2100:]
    assert (
        index.search(vectors[2100:2150], 10)[0] == exact_top(vectors[2100:2150], kept, vectors[2100:], 10)
    ).all()


def test_a_second_instance_sees_writes_through_the_file_stamp(tmp_path):
    vectors = clustered(100)
    writer, reader = VectorIndex(tmp_path, "shared", DIM), VectorIndex(tmp_path, "shared", DIM)
    writer.rebuild(np.arange(100), vectors)
    assert len(reader) == 100
    writer.replace([0, 1], [], np.zeros((0, DIM), np.float32))
    assert len(reader) == 98 and 0 not in reader.search(vectors[0], 5)[0][0]


def test_empty_and_oversized_k(tmp_path):
    index = VectorIndex(tmp_path, "empty", DIM)
    ids, scores = index.search(np.ones(DIM, np.float32) / 8, 3)
    assert ids.tolist() == [[-1, -1, -1]] and len(index) == 0 and index.ids().size == 0
    index.rebuild(np.array([7]), clustered(1))
    assert index.search(clustered(1), 3)[0].tolist() == [[7, -1, -1]]


def test_a_file_of_another_dimension_is_refused(tmp_path):
    VectorIndex(tmp_path, "dims", 8).rebuild(np.arange(3), np.eye(3, 8, dtype=np.float32))
    with pytest.raises(ValueError, match="reindex"):
        len(VectorIndex(tmp_path, "dims", DIM))


# --- Crashes and concurrent processes ----------------------------------------------------------

# Rebuilds a large IVF index in a subprocess; its rename waits for a "go" file (never made when the
# test kills it), so the test knows the new file is written and fsynced but not yet in place.
REBUILD = """
import os, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from retrieval.index import VectorIndex

rename = os.replace
def held_rename(src, dst):
    print("written", flush=True)
    while not os.path.exists({go!r}):
        time.sleep(0.01)
    rename(src, dst)
os.replace = held_rename

rng = np.random.default_rng(1)
x = rng.standard_normal(({n}, {dim}), dtype=np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
print("building", flush=True)
VectorIndex({directory!r}, "c", {dim}, approx_threshold=1000).rebuild(np.arange({n}) + 10_000, x)
print("done", flush=True)
"""


def _rebuilder(directory: Path, go: Path, n: int = 100_000) -> subprocess.Popen:
    script = REBUILD.format(repo=str(REPO), go=str(go), n=n, dim=DIM, directory=str(directory))
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "DEBUG": "1"}
    )


@pytest.mark.slow
def test_rebuild_killed_midway_leaves_previous_index_usable(tmp_path):
    vectors, ids = clustered(500), np.arange(500)
    VectorIndex(tmp_path, "c", DIM).rebuild(ids, vectors)
    before = VectorIndex(tmp_path, "c", DIM).search(vectors[:20], 5)
    process = _rebuilder(tmp_path, tmp_path / "go")
    try:
        assert process.stdout.readline().strip() == "building"
        assert process.stdout.readline().strip() == "written"  # 100k vectors on disk, not renamed
    finally:
        process.kill()
        process.wait()
    leftovers = list(tmp_path.glob("c.faiss.tmp*"))
    assert leftovers and leftovers[0].stat().st_size > 100_000 * DIM * 4  # the killed writer's file

    reader = VectorIndex(tmp_path, "c", DIM)  # a fresh process's view
    assert len(reader) == 500 and reader.kind == "exact"
    after = reader.search(vectors[:20], 5)
    assert (after[0] == before[0]).all() and np.allclose(after[1], before[1])
    reader.replace([0], [], np.zeros((0, DIM), np.float32))  # the next writer clears the leftover
    assert not list(tmp_path.glob("c.faiss.tmp*")) and len(reader) == 499


@pytest.mark.slow
def test_searches_keep_answering_while_another_process_rebuilds(tmp_path):
    vectors, ids = clustered(500), np.arange(500)
    index = VectorIndex(tmp_path, "c", DIM)
    index.rebuild(ids, vectors)
    process = _rebuilder(tmp_path, tmp_path / "go")
    try:
        assert process.stdout.readline().strip() == "building"
        deadline = time.monotonic() + 60
        answered = 0
        while answered < 20 or not list(tmp_path.glob("c.faiss.tmp*")):
            assert time.monotonic() < deadline
            found, _ = index.search(vectors[answered % 500], 1)  # the old index, while it builds
            assert found[0][0] == answered % 500
            answered += 1
        assert process.stdout.readline().strip() == "written"
        assert index.search(vectors[3], 1)[0][0][0] == 3  # written but not renamed: still the old
        (tmp_path / "go").touch()
        assert process.stdout.readline().strip() == "done"
    finally:
        process.kill()
        process.wait()
    assert len(index) == 100_000 and index.kind == "ivf"  # reloaded on the new stamp
    assert index.search(vectors[3], 1)[0][0][0] >= 10_000


# --- GPU ---------------------------------------------------------------------------------------


def test_search_stays_on_cpu_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "gpu_count", lambda: 0)
    copied = []
    monkeypatch.setattr(index_module, "_to_gpu", lambda *a: copied.append(a))
    index = VectorIndex(tmp_path, "cpu", DIM)
    index.rebuild(np.arange(10), clustered(10))
    assert index.search(clustered(10)[0], 1)[0][0][0] == 0
    assert not copied and index._gpu_index is None


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() == 0, reason="needs faiss-gpu and a CUDA device")
def test_gpu_copy_answers_like_the_cpu_index(tmp_path):
    vectors, ids = clustered(4000), np.arange(4000)
    for threshold in (10_000, 1000):
        index = VectorIndex(tmp_path, f"gpu{threshold}", DIM, approx_threshold=threshold)
        index.rebuild(ids, vectors)
        found, _ = index.search(vectors[:100], 10)
        assert index._gpu_index is not None
        assert recall(found, exact_top(vectors[:100], ids, vectors, 10)) >= 0.95


# --- Check and repair against the database ---------------------------------------------------


def _collection_with_chunks(name: str, dim: int, n: int = 12) -> list[Chunk]:
    document = Document.objects.create(
        collection=name, title="Router guide", source=f"/kb/{name}.md", status=Document.Status.READY
    )
    vectors = clustered(n, dim=dim, seed=11)
    return Chunk.objects.bulk_create(
        Chunk(document=document, ordinal=i, text=f"Step {i}: hold the reset button.", embedding=v.tobytes())
        for i, v in enumerate(vectors)
    )


@pytest.mark.django_db
@pytest.mark.slow
def test_check_index_finds_missing_and_extra_ids_and_repair_fixes_them(embedder):
    chunks = _collection_with_chunks("consistency", embedder.dim)
    index = get_index("consistency", embedder.dim)
    report = check_index("consistency")
    assert not report.ok and report.missing_ids == [c.id for c in chunks] and report.index_count == 0

    stray = 10_000_000
    index.replace([], [stray], clustered(1, dim=embedder.dim))
    Chunk.objects.filter(pk=chunks[0].pk).update(embedding=None)  # a row from before stored vectors
    count, _ = repair("consistency")
    assert count == len(chunks) and check_index("consistency").ok
    assert (index.ids() == np.array([c.id for c in chunks])).all()
    stored = np.frombuffer(bytes(Chunk.objects.get(pk=chunks[0].pk).embedding), dtype=np.float32)
    assert np.allclose(stored, embedder.embed([chunks[0].text])[0], atol=1e-5)  # embedded again, kept
    # A vector kept in the database is what the index serves.
    assert index.search(np.frombuffer(chunks[5].embedding, np.float32), 1)[0][0][0] == chunks[5].id

    index.replace([chunks[1].id], [stray], clustered(1, dim=embedder.dim))
    report = check_index("consistency")
    assert report.missing_ids == [chunks[1].id] and report.extra_ids == [stray]
    reports = {r.collection: r for r in check_and_repair_all()}
    assert not reports["consistency"].ok and check_index("consistency").ok


@pytest.mark.django_db
@pytest.mark.slow
def test_reindex_check_exit_codes(embedder):
    chunks = _collection_with_chunks("cmdcheck", embedder.dim)
    with pytest.raises(CommandError) as caught:
        call_command("reindex", "--check", "--collection", "cmdcheck", stdout=io.StringIO())
    assert caught.value.returncode == 1

    out = io.StringIO()
    call_command("reindex", "--collection", "cmdcheck", stdout=out)
    assert f"cmdcheck: {len(chunks)} vectors" in out.getvalue()
    out = io.StringIO()
    call_command("reindex", "--check", "--collection", "cmdcheck", stdout=out)  # exit 0
    [report] = json.loads(out.getvalue())
    assert report["ok"] and report["db_count"] == report["index_count"] == len(chunks)


# --- The embedder behind ingestion --------------------------------------------------------------


@pytest.mark.slow
def test_openvino_embedder_matches_torch_row_for_row(embedder):
    pytest.importorskip("openvino")
    from inference.backends.local import LocalEmbedder

    if embedder.backend != "openvino":
        pytest.skip("the configured embedder does not use OpenVINO")
    reference = LocalEmbedder(backend="torch")
    long = "Refunds take 5 to 10 working days. " * 30
    texts = ["Reset", "How do I reset my router?", long, "Öffnungszeiten"]
    ours, theirs = embedder.embed(texts), reference.embed(texts)  # (4, dim) each, input order
    assert ours.dtype == np.float32 and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(ours * theirs, axis=1)) >= 0.999
    assert np.allclose(embedder.embed(texts[1:2])[0], ours[1], atol=1e-5)  # batching changes nothing
    assert embedder.model_version == reference.model_version + "+openvino"

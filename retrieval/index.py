"""The vector index: FAISS behind one small class, one file per collection under INDEX_DIR.

Vectors are L2-normalised, so inner product is cosine similarity. Vector ids are Chunk primary
keys. Writers (the ingest command, Celery workers, `reindex`) take an exclusive file lock for
their read-modify-write and replace the file atomically (write a temporary file, fsync, rename),
so a crash or SIGKILL at any moment leaves the previous file usable, and a reader here or in
another process sees either the old or the new index, never half of one; readers reload when
the file's stamp (inode, mtime, size) changes.

Two layouts, chosen by size (benchmarks/RESULTS.md, "Knowledge base: index and ingestion speed",
`python benchmarks/retrieval_bench.py`: real MiniLM chunk embeddings of the 3,946-passage
evaluation corpus enlarged by Gaussian perturbation, its 183 real queries one at a time, on the
2-core dev machine):
- up to INDEX_APPROX_THRESHOLD vectors (default 50,000): exact search, `IndexIDMap2(IndexFlatIP)`.
  A flat scan costs ~0.08 ms per 1,000 vectors: p95 0.8 ms at 10k, 7.7 ms at 100k, 116 ms at 1M.
  Up to ~50k it stays under ~4 ms, well below embedding the query (~15 ms), so exactness is free.
- above it: `IndexIVFFlat` with nlist = the power of two nearest sqrt(n) and nprobe =
  INDEX_NPROBE (default 32). recall@10 against exact search at nprobe 32: 0.993 at 100k (p95
  1.2 ms) and 0.995 at 1M (nlist 1,024, p95 4.5 ms); nprobe 16 drops to 0.985-0.992, nprobe 64
  reaches 1.000 at 1.9 / 7.8 ms. A first build of 1M vectors takes ~26 s (train, add, write).
  IVF rather than HNSW: HNSW (M=32, efConstruction 40) reached only recall 0.977 at efSearch 128
  on the same 100k set (near-duplicate neighbourhoods hurt its graph) and builds 4x slower; it
  cannot remove ids (we would need tombstones and an over-fetch) and its links add ~17% memory.
  IVF removes ids natively, adds incrementally, and keeps the vectors themselves (1.45 GiB per
  million at 384 dimensions, as exact search), so it is retrained from itself when it grows.

All FAISS calls run on the model thread (inference/runtime.py): FAISS and torch share one OpenMP
runtime, and a FAISS call on any other thread started a second worker pool that halved chat
decoding speed for the rest of the process's life. Long builds are cut into short model-thread
calls (adds of BUILD_BATCH vectors; k-means training, ~10 s at 1M, is the longest), so searches in
this process keep answering from the old index meanwhile; lock waits and fsync happen on the
calling thread, never on the model thread.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import faiss
import numpy as np
from django.conf import settings

from inference.runtime import model_thread
from retrieval.models import COLLECTION_NAME

log = logging.getLogger(__name__)

DEFAULT_APPROX_THRESHOLD = 50_000
DEFAULT_NPROBE = 32
# Vectors per model-thread call while building: ~0.1-0.5 s each, so a search waits at most that.
BUILD_BATCH = 32_768
# k-means points per IVF list: 64 is 4x fewer than FAISS's default (256), so training takes a
# quarter of the time (~10-15 s at 1M vectors); recall@10 stayed at 0.99+ at nprobe 32.
TRAIN_POINTS_PER_LIST = 64
# FAISS warns below 39 training points per centroid: fewer lists rather than poor centroids.
MIN_POINTS_PER_LIST = 39


def nlist_for(n: int) -> int:
    """IVF lists for n vectors: the power of two nearest sqrt(n) (~1,000 vectors per list at 1M),
    halved until every list has at least MIN_POINTS_PER_LIST training points."""
    lists: int = 2 ** round(math.log2(math.sqrt(max(n, 1))))
    while lists > 1 and n < MIN_POINTS_PER_LIST * lists:
        lists //= 2
    return max(lists, 1)


def gpu_count() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu (the default install) or without a CUDA device."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get else 0
    except RuntimeError:  # a faiss-gpu build on a machine whose driver is missing
        return 0


_gpu_resources = None


def _to_gpu(index: faiss.Index, nprobe: int) -> faiss.Index:
    global _gpu_resources
    if _gpu_resources is None:
        _gpu_resources = faiss.StandardGpuResources()
    gpu_index = faiss.index_cpu_to_gpu(_gpu_resources, 0, index)
    if _ivf(index) is not None:
        faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", nprobe)
    return gpu_index


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF index
        return None


def _id_map(index: faiss.Index) -> faiss.IndexIDMap:
    """The exact layout, `IndexIDMap2(IndexFlatIP)` (an index that is not IVF is that one)."""
    if not isinstance(index, faiss.IndexIDMap):
        raise TypeError(f"not an IVF or id-mapped index: {type(index).__name__}")
    return index


def _lists(ivf: faiss.IndexIVF) -> faiss.InvertedLists:
    if ivf.invlists is None:
        raise TypeError("an IVF index without inverted lists")
    return ivf.invlists


def _extract(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """Every (id, vector) an exact or IVF-Flat index holds: ids (n,) int64, vectors (n, dim)."""
    ivf = _ivf(index)
    if ivf is None:
        exact = _id_map(index)
        ids = faiss.vector_to_array(exact.id_map).astype(np.int64)  # (n,)
        vectors = exact.index.reconstruct_n(0, exact.ntotal) if exact.ntotal else None
        return ids, (vectors if vectors is not None else np.zeros((0, exact.d), np.float32))
    invlists = _lists(ivf)
    id_parts, vector_parts = [], []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
        codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size)
        vector_parts.append(codes.view(np.float32).reshape(size, ivf.d).copy())  # IVF-Flat codes are floats
    if not id_parts:
        return np.zeros(0, np.int64), np.zeros((0, ivf.d), np.float32)
    return np.concatenate(id_parts).astype(np.int64), np.concatenate(vector_parts)


def _ids_of(index: faiss.Index) -> np.ndarray:
    ivf = _ivf(index)
    if ivf is None:
        return faiss.vector_to_array(_id_map(index).id_map).astype(np.int64)
    invlists = _lists(ivf)
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


class VectorIndex:
    """One collection's vectors. Public calls may come from any thread; FAISS work is handed to
    the model thread. Do not call the writing methods from the model thread itself."""

    def __init__(
        self,
        directory: Path,
        collection: str,
        dim: int,
        *,
        approx_threshold: int | None = None,
        nprobe: int | None = None,
    ) -> None:
        self.path = Path(directory) / f"{collection}.faiss"
        self.collection = collection
        self.dim = dim
        self.approx_threshold = int(
            approx_threshold
            if approx_threshold is not None
            else getattr(settings, "INDEX_APPROX_THRESHOLD", DEFAULT_APPROX_THRESHOLD)
        )
        self.nprobe = int(nprobe if nprobe is not None else getattr(settings, "INDEX_NPROBE", DEFAULT_NPROBE))
        self._index: faiss.Index | None = None
        self._gpu_index: faiss.Index | None = None  # search copy on the GPU, when there is one
        self._stamp: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the loaded file
        self._lock = threading.Lock()  # guards _index, _gpu_index and _stamp
        # One writer per process at a time; re-entrant so `repair` can hold the file lock while it
        # reads the database and then call `rebuild`.
        self._write_lock = threading.RLock()
        self._write_depth = 0
        self._lock_file: IO[str] | None = None

    # --- Reading ------------------------------------------------------------------------------

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _configure(self, index: faiss.Index) -> faiss.Index:
        if index.d != self.dim:
            raise ValueError(
                f"{self.path.name} holds {index.d}-dimensional vectors, not {self.dim}: "
                "run `manage.py reindex`"
            )
        ivf = _ivf(index)
        if ivf is not None:
            ivf.nprobe = min(self.nprobe, ivf.nlist)
        return index

    def _current(self) -> faiss.Index:
        """The index as on disk now, re-read only if the file changed since the last read.
        Call on the model thread with self._lock held."""
        stamp = self._file_stamp()
        if self._index is None or stamp != self._stamp:
            self._index = self._configure(faiss.read_index(str(self.path))) if stamp else self._empty()
            self._stamp = stamp
            self._gpu_index = None
        return self._index

    def _searcher(self, index: faiss.Index) -> faiss.Index:
        """The GPU copy when FAISS sees a GPU (faiss-gpu installed and a device present), else
        the CPU index itself."""
        if self._gpu_index is None and index.ntotal and gpu_count() > 0:
            try:
                self._gpu_index = _to_gpu(index, self.nprobe)
            except RuntimeError:
                log.exception("event=index_gpu_copy_failed collection=%s", self.collection)
                return index
        return self._gpu_index if self._gpu_index is not None else index

    @property
    def kind(self) -> str:
        """'exact' (flat) or 'ivf', as on disk now."""
        return model_thread().call(self._kind)

    def _kind(self) -> str:
        with self._lock:
            return "ivf" if _ivf(self._current()) is not None else "exact"

    def __len__(self) -> int:
        return model_thread().call(self._len)

    def _len(self) -> int:
        with self._lock:
            return int(self._current().ntotal)

    def ids(self) -> np.ndarray:
        """Every vector id in the index as on disk now, sorted. (n,) int64."""
        return np.sort(model_thread().call(self._ids))

    def _ids(self) -> np.ndarray:
        with self._lock:
            return _ids_of(self._current())

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """query: (dim,) or (n, dim) float32. Returns (ids, scores), each (n, k); id -1 = none.

        Runs on the model thread: FAISS and torch share one OpenMP runtime, and a FAISS search
        on any other thread starts a second worker pool that slowed chat decoding from 27 to
        15 tokens/s on the 2-core dev machine, for the rest of the process's life.
        """
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(query, dtype=np.float32)))  # (n, dim)
        return model_thread().call(self._search, queries, k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            index = self._current()
            if index.ntotal == 0 or k <= 0:
                n = queries.shape[0]
                return np.full((n, max(k, 0)), -1, dtype=np.int64), np.zeros((n, max(k, 0)), np.float32)
            scores, ids = self._searcher(index).search(queries, k)  # (n, k) each
        return ids, scores

    # --- Writing ------------------------------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the collection's exclusive file lock (all writers, all processes). Re-entrant in
        the thread that holds it. Searches are not blocked: they read the file in place."""
        with self._write_lock:
            if self._write_depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lock_file = open(self.path.with_suffix(".lock"), "a")  # noqa: SIM115 - closed below
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX)
                except BaseException:
                    lock_file.close()
                    raise
                self._lock_file = lock_file
                self._remove_stale_temporaries()
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
                if self._write_depth == 0 and self._lock_file is not None:
                    fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                    self._lock_file.close()
                    self._lock_file = None

    def _temporary(self) -> Path:
        return self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")

    def _remove_stale_temporaries(self) -> None:
        # Under the exclusive lock no other writer is running: any temporary file is what a
        # killed writer left behind.
        for stale in self.path.parent.glob(f"{self.path.name}.tmp*"):
            stale.unlink(missing_ok=True)
            log.warning("event=index_stale_temporary_removed collection=%s", self.collection)

    def _save(self, index: faiss.Index) -> None:
        """Write `index` beside the live file, fsync it, rename it over the live file and fsync the
        folder; then serve it here. Until the rename every reader keeps the previous file."""
        tmp = self._temporary()
        try:
            model_thread().call(faiss.write_index, index, str(tmp))
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
        stamp = self._file_stamp()
        with self._lock:
            self._index, self._stamp, self._gpu_index = index, stamp, None

    def replace(self, remove_ids: list[int], add_ids: list[int], vectors: np.ndarray) -> None:
        """Remove some ids and add others in one atomic update. vectors: (len(add_ids), dim).
        Adding an id that is already present replaces its vector (re-running is harmless).
        Cost: one rewrite of the whole file (~1.3 ms per 1,000 vectors with fsync)."""
        remove = np.unique(np.concatenate([np.asarray(remove_ids, np.int64), np.asarray(add_ids, np.int64)]))
        add = np.asarray(add_ids, dtype=np.int64)  # (m,)
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(add), self.dim))
        if len(np.unique(add)) != len(add):
            raise ValueError("add_ids has duplicates")
        with self.exclusive():
            try:
                index = model_thread().call(self._apply, remove, add, vectors)
                self._save(index)
            except BaseException:
                with self._lock:
                    self._index = None  # memory may hold a change the file does not: re-read it
                raise

    def _apply(self, remove: np.ndarray, add: np.ndarray, vectors: np.ndarray) -> faiss.Index:
        with self._lock:
            index = self._current()
            if len(remove) and index.ntotal:
                index.remove_ids(remove)  # type: ignore[arg-type]  # faiss's stub: an IDSelector only
            if len(add):
                index.add_with_ids(vectors, add)
            self._gpu_index = None
            return self._relayout(index)

    def _relayout(self, index: faiss.Index) -> faiss.Index:
        """The same vectors in the layout their number calls for: exact becomes IVF above the
        threshold; IVF becomes exact again below half of it (not at once, so a collection hovering
        around the threshold is not converted on every write), and is retrained when it has grown
        or shrunk 4x past the size its lists were chosen for."""
        n = int(index.ntotal)
        ivf = _ivf(index)
        if ivf is None and n > self.approx_threshold:
            reason, approximate = "grew_past_threshold", True
        elif ivf is not None and n < self.approx_threshold // 2:
            reason, approximate = "shrank_below_threshold", False
        elif ivf is not None and not ivf.nlist**2 / 4 <= n <= 4 * ivf.nlist**2 and nlist_for(n) != ivf.nlist:
            reason, approximate = "list_count_off", True
        else:
            return index
        started = time.perf_counter()
        ids, vectors = _extract(index)
        fresh = self._layout_for(len(ids), approximate=approximate)
        fresh_ivf = _ivf(fresh)
        if fresh_ivf is not None:
            fresh.train(self._training_sample(vectors, fresh_ivf.nlist))
        fresh.add_with_ids(vectors, ids)
        log.info(
            "event=index_relayout collection=%s reason=%s vectors=%d layout=%s seconds=%.1f",
            self.collection,
            reason,
            n,
            "ivf" if fresh_ivf is not None else "exact",
            time.perf_counter() - started,
        )
        return fresh

    def _layout_for(self, n: int, *, approximate: bool) -> faiss.Index:
        if not approximate:
            return self._empty()
        index = faiss.index_factory(self.dim, f"IVF{nlist_for(n)},Flat", faiss.METRIC_INNER_PRODUCT)
        return self._configure(index)

    @staticmethod
    def _training_sample(vectors: np.ndarray, nlist: int) -> np.ndarray:
        n = len(vectors)
        take = min(n, TRAIN_POINTS_PER_LIST * nlist)
        # A fixed seed: the same data gives the same lists, so rebuilds are reproducible.
        rows = np.sort(np.random.default_rng(0).choice(n, size=take, replace=False)) if take < n else None
        return np.ascontiguousarray(vectors[rows] if rows is not None else vectors)  # (take, dim)

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole index with these vectors, atomically: until the new file is renamed
        into place, every reader (here or in another process) keeps the previous one. The build
        runs in short model-thread calls, so searches in this process interleave with it.
        ids: (n,) int64, unique; vectors: (n, dim) float32, L2-normalised."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)  # (n,)
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim))
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids has duplicates")
        with self.exclusive():
            started = time.perf_counter()
            fresh = model_thread().call(
                self._layout_for, len(ids), approximate=len(ids) > self.approx_threshold
            )
            ivf = _ivf(fresh)
            if ivf is not None:
                model_thread().call(fresh.train, self._training_sample(vectors, ivf.nlist))
            for start in range(0, len(ids), BUILD_BATCH):
                end = start + BUILD_BATCH
                model_thread().call(fresh.add_with_ids, vectors[start:end], ids[start:end])
            self._save(fresh)
        log.info(
            "event=index_rebuilt collection=%s vectors=%d layout=%s nlist=%d seconds=%.1f",
            self.collection,
            len(ids),
            "ivf" if ivf is not None else "exact",
            ivf.nlist if ivf is not None else 0,
            time.perf_counter() - started,
        )


_indexes: dict[tuple[str, int], VectorIndex] = {}
_indexes_lock = threading.Lock()


def get_index(collection: str, dim: int) -> VectorIndex:
    if not COLLECTION_NAME.fullmatch(collection):
        raise ValueError(f"invalid collection name {collection!r}")
    with _indexes_lock:
        key = (collection, dim)
        if key not in _indexes:
            _indexes[key] = VectorIndex(settings.INDEX_DIR, collection, dim)
        return _indexes[key]

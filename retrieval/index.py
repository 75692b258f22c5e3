"""The vector index: FAISS behind one small class, one file per collection under INDEX_DIR.

Vectors are L2-normalised, so inner product is cosine similarity. Vector ids are Chunk primary
keys. Writers (the ingest command, Celery workers) take an exclusive file lock for their
read-modify-write and replace the file atomically (write, fsync, rename), so a reader in another
process always sees either the old or the new index, never half of one; readers reload when the
file changes on disk.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
from django.conf import settings

from inference.runtime import model_thread
from retrieval.models import COLLECTION_NAME


class VectorIndex:
    def __init__(self, directory: Path, collection: str, dim: int) -> None:
        self.path = Path(directory) / f"{collection}.faiss"
        self.dim = dim
        self._index: faiss.Index | None = None
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the loaded file
        self._lock = threading.Lock()

    def _empty(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _current(self) -> faiss.Index:
        """The index as on disk now, re-read only if the file changed since the last read."""
        stamp = self._file_stamp()
        if self._index is None or stamp != self._stamp:
            self._index = faiss.read_index(str(self.path)) if stamp else self._empty()
            self._stamp = stamp
        return self._index

    def __len__(self) -> int:
        with self._lock:
            return int(self._current().ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """query: (dim,) or (n, dim) float32. Returns (ids, scores), each (n, k); id -1 = none.

        Runs on the model thread: FAISS and torch share one OpenMP runtime, and a FAISS search
        on any other thread starts a second worker pool that slowed chat decoding from 27 to
        15 tokens/s on the 2-core dev machine, for the rest of the process's life.
        """
        queries = np.atleast_2d(np.asarray(query, dtype=np.float32))  # (n, dim)
        return model_thread().call(self._search, queries, k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            index = self._current()
            if index.ntotal == 0:
                n = queries.shape[0]
                return np.full((n, k), -1, dtype=np.int64), np.zeros((n, k), dtype=np.float32)
            scores, ids = index.search(queries, k)
        return ids, scores

    @contextmanager
    def _writing(self) -> Iterator[faiss.Index]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock_file, self._lock:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                index = self._current()
                yield index
                self._save(index)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _save(self, index: faiss.Index) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._index, self._stamp = index, self._file_stamp()

    def replace(self, remove_ids: list[int], add_ids: list[int], vectors: np.ndarray) -> None:
        """Remove some ids and add others in one atomic update. vectors: (len(add_ids), dim)."""
        model_thread().call(self._replace, remove_ids, add_ids, vectors)

    def _replace(self, remove_ids: list[int], add_ids: list[int], vectors: np.ndarray) -> None:
        with self._writing() as index:
            if remove_ids:
                index.remove_ids(np.asarray(remove_ids, dtype=np.int64))
            if add_ids:
                index.add_with_ids(np.asarray(vectors, dtype=np.float32), np.asarray(add_ids, dtype=np.int64))

    def ids(self) -> np.ndarray:
        """Every vector id in the index as on disk now. (n,) int64."""
        return model_thread().call(self._ids)

    def _ids(self) -> np.ndarray:
        with self._lock:
            index = self._current()
            return (
                faiss.vector_to_array(index.id_map).astype(np.int64)
                if index.ntotal
                else np.zeros(0, np.int64)
            )

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole index with these vectors, atomically: until the new file is renamed
        into place, every reader (here or in another process) keeps the previous one."""
        model_thread().call(self._rebuild, np.asarray(ids, dtype=np.int64), np.asarray(vectors, np.float32))

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        fresh = self._empty()
        if len(ids):
            fresh.add_with_ids(vectors, ids)  # vectors: (n, dim)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock_file, self._lock:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._save(fresh)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


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

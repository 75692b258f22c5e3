"""Keep the vector index in step with the database, which is the source of truth.

`check_index` compares the chunk ids of a collection's ready documents with the ids in its FAISS
file; `repair` rebuilds the file from the embeddings stored on the chunk rows (embedding again
only chunks that have none). `serve` runs `check_and_repair_all` at start, so an index left
behind by a crash, a restored database backup or a deleted file is fixed before the first search.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from inference.services import get_embedder
from retrieval.index import get_index
from retrieval.models import Chunk, Document

log = logging.getLogger(__name__)


@dataclass
class Report:
    collection: str
    db_count: int
    index_count: int
    missing_ids: list[int] = field(default_factory=list)  # in the database, not in the index
    extra_ids: list[int] = field(default_factory=list)  # in the index, not in the database

    @property
    def ok(self) -> bool:
        return not self.missing_ids and not self.extra_ids

    def as_dict(self, limit: int = 20) -> dict:
        data = asdict(self)
        data["missing_ids"], data["extra_ids"] = self.missing_ids[:limit], self.extra_ids[:limit]
        data["missing"], data["extra"], data["ok"] = len(self.missing_ids), len(self.extra_ids), self.ok
        return data


def _ready_chunks(collection: str):
    return Chunk.objects.filter(document__collection=collection, document__status=Document.Status.READY)


def collections() -> list[str]:
    return sorted(set(Document.objects.values_list("collection", flat=True)))


def check_index(collection: str) -> Report:
    db_ids = set(_ready_chunks(collection).values_list("id", flat=True))
    index_ids = set(get_index(collection, get_embedder().dim).ids().tolist())
    return Report(
        collection=collection,
        db_count=len(db_ids),
        index_count=len(index_ids),
        missing_ids=sorted(db_ids - index_ids),
        extra_ids=sorted(index_ids - db_ids),
    )


def repair(collection: str) -> tuple[int, float]:
    """Rebuild a collection's index from the database; returns (vectors, seconds)."""
    started = time.perf_counter()
    embedder = get_embedder()
    rows = list(_ready_chunks(collection).order_by("id").values_list("id", "embedding", "text"))
    stale = [(i, text) for i, emb, text in rows if emb is None or len(bytes(emb)) != embedder.dim * 4]
    fresh = (
        dict(zip([i for i, _ in stale], embedder.embed([t for _, t in stale]), strict=True)) if stale else {}
    )
    for chunk_id, vector in fresh.items():
        Chunk.objects.filter(pk=chunk_id).update(embedding=vector.astype(np.float32).tobytes())
    ids = np.array([i for i, _, _ in rows], dtype=np.int64)  # (n,)
    vectors = (
        np.stack(
            [fresh[i] if i in fresh else np.frombuffer(bytes(emb), dtype=np.float32) for i, emb, _ in rows]
        )
        if rows
        else np.zeros((0, embedder.dim), np.float32)
    )
    get_index(collection, embedder.dim).rebuild(ids, vectors)
    return len(ids), time.perf_counter() - started


def check_and_repair_all() -> list[Report]:
    reports = []
    for collection in collections():
        report = check_index(collection)
        reports.append(report)
        if not report.ok:
            count, seconds = repair(collection)
            log.warning(
                "event=index_repaired collection=%s missing=%d extra=%d vectors=%d seconds=%.1f",
                collection,
                len(report.missing_ids),
                len(report.extra_ids),
                count,
                seconds,
            )
    return reports

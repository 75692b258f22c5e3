"""Keep the vector index in step with the database, which is the source of truth.

`check_index` compares the chunk ids of a collection's ready documents with the ids in its FAISS
file; `repair` rebuilds the file from the embeddings stored on the chunk rows (embedding again,
and storing, only chunks that have none). `serve` runs `check_and_repair_all` at start, so an
index left behind by a crash, a restored database backup or a deleted file is fixed before the
first search. Logs carry ids and counts only, never chunk text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import QuerySet

from inference.base import Embedder
from inference.services import get_embedder
from retrieval.index import get_index
from retrieval.models import COLLECTION_NAME, Chunk, Document

log = logging.getLogger(__name__)

# Chunks re-embedded and stored per batch during a repair (memory stays flat on big collections).
REEMBED_BATCH = 64


@dataclass
class Report:
    collection: str
    db_count: int
    index_count: int
    missing_ids: list[int] = field(default_factory=list)  # in the database, not in the index
    extra_ids: list[int] = field(default_factory=list)  # in the index, not in the database
    error: str = ""  # the index file could not be used at all (e.g. another dimension)

    @property
    def ok(self) -> bool:
        return not self.missing_ids and not self.extra_ids and not self.error

    def as_dict(self, limit: int = 20) -> dict[str, Any]:
        data = asdict(self)
        data["missing_ids"], data["extra_ids"] = self.missing_ids[:limit], self.extra_ids[:limit]
        data["missing"], data["extra"], data["ok"] = len(self.missing_ids), len(self.extra_ids), self.ok
        return data


def _ready_chunks(collection: str) -> QuerySet[Chunk]:
    return Chunk.objects.filter(document__collection=collection, document__status=Document.Status.READY)


def collections() -> list[str]:
    """Every collection with documents in the database or an index file on disk (a file whose
    documents were all deleted still needs emptying)."""
    names = set(Document.objects.values_list("collection", flat=True))
    index_dir = settings.INDEX_DIR
    if index_dir.is_dir():
        names |= {p.stem for p in index_dir.glob("*.faiss") if COLLECTION_NAME.fullmatch(p.stem)}
    return sorted(names)


def _dimension(collection: str) -> int:
    """The collection's vector dimension from a stored embedding, so a check at start-up does not
    load the embedding model; the model's dimension if no chunk has one."""
    stored = (
        Chunk.objects.filter(document__collection=collection, embedding__isnull=False)
        .values_list("embedding", flat=True)
        .first()
    )
    return len(bytes(stored)) // 4 if stored else get_embedder().dim


def check_index(collection: str) -> Report:
    db_ids = set(_ready_chunks(collection).values_list("id", flat=True))
    try:
        index_ids = set(get_index(collection, _dimension(collection)).ids().tolist())
    except (ValueError, RuntimeError) as exc:  # unreadable file or another dimension
        return Report(collection, len(db_ids), 0, missing_ids=sorted(db_ids), error=str(exc)[:200])
    return Report(
        collection=collection,
        db_count=len(db_ids),
        index_count=len(index_ids),
        missing_ids=sorted(db_ids - index_ids),
        extra_ids=sorted(index_ids - db_ids),
    )


def _reembed(embedder: Embedder, stale: list[tuple[int, str]]) -> dict[int, np.ndarray]:
    """Embed chunks that have no (usable) stored vector and store the vectors on their rows."""
    fresh: dict[int, np.ndarray] = {}
    for start in range(0, len(stale), REEMBED_BATCH):
        batch = stale[start : start + REEMBED_BATCH]
        vectors = embedder.embed([text for _, text in batch])  # (b, dim)
        pairs = [(i, v.astype(np.float32)) for (i, _), v in zip(batch, vectors, strict=True)]
        Chunk.objects.bulk_update([Chunk(pk=i, embedding=v.tobytes()) for i, v in pairs], ["embedding"])
        fresh.update(pairs)
    return fresh


def repair(collection: str) -> tuple[int, float]:
    """Rebuild a collection's index from the database; returns (vectors, seconds).

    The index's writer lock is held from reading the rows to renaming the new file, so a
    document ingested meanwhile waits and is applied on top of the rebuilt index (its chunks are
    never lost between the two). Cost: reading every stored vector (1.5 KiB per chunk) plus the
    rebuild (~40 s per million vectors on 2 cores); embedding only where a vector is missing."""
    started = time.perf_counter()
    dim = _dimension(collection)
    index = get_index(collection, dim)
    with index.exclusive():
        queryset = _ready_chunks(collection).order_by("id")
        count = queryset.count()
        ids = np.zeros(count, dtype=np.int64)  # (n,)
        vectors = np.zeros((count, dim), dtype=np.float32)  # (n, dim)
        stale: list[tuple[int, str]] = []
        stale_rows: list[int] = []
        n = 0
        for chunk_id, embedding, text in queryset.values_list("id", "embedding", "text").iterator(2000):
            if n == count:  # rows added since the count: the next check picks them up
                break
            ids[n] = chunk_id
            if embedding is None or len(bytes(embedding)) != dim * 4:
                stale.append((chunk_id, text))
                stale_rows.append(n)
            else:
                vectors[n] = np.frombuffer(bytes(embedding), dtype=np.float32)
            n += 1
        ids, vectors = ids[:n], vectors[:n]
        if stale:
            embedder = get_embedder()
            if embedder.dim != dim:
                raise ValueError(
                    f"collection {collection!r} stores {dim}-d vectors; the model makes {embedder.dim}"
                )
            fresh = _reembed(embedder, stale)
            for row, (chunk_id, _) in zip(stale_rows, stale, strict=True):
                vectors[row] = fresh[chunk_id]
        index.rebuild(ids, vectors)
    seconds = time.perf_counter() - started
    log.info(
        "event=index_rebuilt_from_db collection=%s vectors=%d reembedded=%d seconds=%.1f",
        collection,
        n,
        len(stale),
        seconds,
    )
    return n, seconds


def check_and_repair_all() -> list[Report]:
    """Check every collection and rebuild those out of step; returns the reports from before
    any repair. Run once at `serve` start, before the first search."""
    reports = []
    for collection in collections():
        report = check_index(collection)
        reports.append(report)
        log.info(
            "event=index_checked collection=%s db=%d index=%d missing=%d extra=%d ok=%s",
            collection,
            report.db_count,
            report.index_count,
            len(report.missing_ids),
            len(report.extra_ids),
            report.ok,
        )
        if not report.ok:
            count, seconds = repair(collection)
            log.warning(
                "event=index_repaired collection=%s missing=%d extra=%d error=%s vectors=%d seconds=%.1f",
                collection,
                len(report.missing_ids),
                len(report.extra_ids),
                bool(report.error),
                count,
                seconds,
            )
    return reports

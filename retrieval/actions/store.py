"""Stages 2 and 3 of processing, for a group of prepared documents of one collection: embed
(one embedder call for the whole group) and store (one transaction and one index write); and the
record of a failure on the documents it concerns. Stage 1 (read, hash, parse, chunk) and the
entry points are in `retrieval.actions.ingest`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.db import transaction

from inference.base import Embedder
from retrieval.chunking import ChunkDraft
from retrieval.errors import IngestError
from retrieval.index import get_index
from retrieval.models import Chunk, Document

log = logging.getLogger(__name__)

# Chunks per embedder call while a single document shows its progress.
EMBED_BATCH = 64


@dataclass(frozen=True)
class IngestResult:
    document: Document
    changed: bool
    chunks: int


@dataclass
class Prepared:
    """A changed document, parsed and chunked, waiting to be embedded and stored."""

    document: Document
    digest: str
    size_bytes: int
    title: str
    kind: str
    language: str
    drafts: list[ChunkDraft]


def record_failure(documents: list[Document], exc: Exception) -> list[IngestError]:
    """Record `exc` on each document (status failed, code, message) and return the error to
    report for each: an IngestError as it is, anything else as code "internal"."""
    if isinstance(exc, IngestError):
        _fail(documents, exc.code, exc.message)
        return [exc] * len(documents)
    log.error("event=ingest_failed documents=%s", ",".join(str(d.pk) for d in documents), exc_info=exc)
    _fail(documents, "internal", f"Internal error while ingesting ({exc.__class__.__name__}).")
    errors = []
    for document in documents:
        error = IngestError(
            f"{document.title} could not be ingested ({exc.__class__.__name__})", code="internal"
        )
        error.__cause__ = exc
        errors.append(error)
    return errors


def _fail(documents: list[Document], code: str, message: str) -> None:
    Document.objects.filter(pk__in=[d.pk for d in documents]).update(
        status=Document.Status.FAILED, error_code=code[:32], error=message, progress=0
    )


def _progress(document: Document, percent: int) -> None:
    Document.objects.filter(pk=document.pk).update(progress=max(0, min(100, percent)))


def embed_and_store(
    collection: str, group: list[Prepared], embedder: Embedder, *, progress: bool | None = None
) -> dict[int, IngestResult | IngestError]:
    """Stages 2 and 3 for a group of prepared documents of one collection: one embedder call,
    then one transaction and one index write. A failure here fails the whole group (recorded on
    each of its documents); nothing of it is stored. `progress` (default: for a group of one)
    embeds in EMBED_BATCH pieces and saves the document's progress after each. Returns each
    document's outcome by document id."""
    documents = [p.document for p in group]
    show = progress if progress is not None else len(group) == 1
    try:
        Document.objects.filter(pk__in=[d.pk for d in documents]).update(
            status=Document.Status.PROCESSING, progress=10 if show else 1
        )
        texts = [d.text for p in group for d in p.drafts]
        vectors = _embed(texts, embedder, progress_of=documents[0] if show else None)
        return _store(collection, group, vectors, embedder.dim)
    except Exception as exc:
        return {d.pk: e for d, e in zip(documents, record_failure(documents, exc), strict=True)}


def _embed(texts: list[str], embedder: Embedder, *, progress_of: Document | None) -> np.ndarray:
    """(len(texts), dim) float32. One call unless progress is shown: the embedder sorts the
    texts by length and batches them itself, and a larger call pads less."""
    if progress_of is None:
        return np.asarray(embedder.embed(texts), dtype=np.float32)
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        parts.append(embedder.embed(texts[start : start + EMBED_BATCH]))
        _progress(progress_of, 10 + 85 * min(len(texts), start + EMBED_BATCH) // len(texts))
    return np.concatenate(parts).astype(np.float32)


# The document fields stage 3 writes (the others, e.g. `public`, may be changed meanwhile).
_STORED_FIELDS = [
    "title",
    "kind",
    "language",
    "content_hash",
    "size_bytes",
    "status",
    "progress",
    "error",
    "error_code",
    "updated_at",
]


def _store(
    collection: str, group: list[Prepared], vectors: np.ndarray, dim: int
) -> dict[int, IngestResult | IngestError]:
    """Stage 3: replace the group's chunks and vectors in one transaction and one index write.
    vectors: (total drafts of the group, dim), in group order."""
    index = get_index(collection, dim)
    ends = np.cumsum([len(p.drafts) for p in group])  # (len(group),)
    per_document = np.split(vectors, ends[:-1])
    with transaction.atomic():
        present = set(
            Document.objects.select_for_update()
            .filter(pk__in=[p.document.pk for p in group])
            .values_list("pk", flat=True)
        )
        kept = [(p, v) for p, v in zip(group, per_document, strict=True) if p.document.pk in present]
        ids = [p.document.pk for p, _ in kept]
        old_ids = list(Chunk.objects.filter(document_id__in=ids).values_list("id", flat=True))
        Chunk.objects.filter(document_id__in=ids).delete()
        chunks = Chunk.objects.bulk_create(
            Chunk(
                document=p.document,
                ordinal=i,
                text=d.text,
                section=d.section[:500],
                anchor=d.anchor[:200],
                page=d.page,
                kind=d.kind,
                token_count=d.token_count,
                embedding=vector.tobytes(),
            )
            for p, doc_vectors in kept
            for i, (d, vector) in enumerate(zip(p.drafts, doc_vectors, strict=True))
        )
        for p, _ in kept:
            document = p.document
            document.title, document.kind, document.language = p.title, p.kind, p.language
            document.content_hash, document.size_bytes = p.digest, p.size_bytes
            document.status, document.progress = Document.Status.READY, 100
            document.error, document.error_code = "", ""
            # One UPDATE per document: its own values. (bulk_update's CASE per field cost
            # ~7 ms per document to compile, more than the plain statements.)
            document.save(update_fields=_STORED_FIELDS)
        if kept:
            # Inside the transaction: if the index write fails, the chunk rows roll back with it.
            index.replace(old_ids, [c.id for c in chunks], np.concatenate([v for _, v in kept]))
    results: dict[int, IngestResult | IngestError] = {}
    for p, doc_vectors in zip(group, per_document, strict=True):
        if p.document.pk not in present:
            results[p.document.pk] = IngestError(
                f"{p.document.title} was deleted while it was ingested.", code="deleted"
            )
            continue
        log.info(
            "event=document_ingested document=%s kind=%s chunks=%d", p.document.pk, p.kind, len(doc_vectors)
        )
        results[p.document.pk] = IngestResult(p.document, changed=True, chunks=len(doc_vectors))
    return results

"""Celery tasks of the knowledge base. Code that starts one queues it by its name
(`core.jobs.enqueue("retrieval.process_document", pk)`), so nothing imports this module and the
actions it calls never import it back. The names are the contract: queued messages outlive a
deploy."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task

from retrieval.actions.ingest import do_ingest_path, process_document
from retrieval.bm25 import get_bm25
from retrieval.errors import IngestError
from retrieval.models import Document

log = logging.getLogger(__name__)


@shared_task(name="retrieval.process_document")  # type: ignore[untyped-decorator]  # celery is untyped
def process_document_task(document_id: int) -> str:
    try:
        document = Document.objects.get(pk=document_id)
    except Document.DoesNotExist:
        return "gone"  # deleted before the worker got to it
    try:
        process_document(document)
    except IngestError as exc:
        # Recorded on the document (status, code, message); retrying would fail the same way.
        log.info("event=document_failed document=%s code=%s", document_id, exc.code)
        return exc.code
    _refresh_bm25_when_idle(document.collection)
    return "ready"


@shared_task(name="retrieval.ingest_path")  # type: ignore[untyped-decorator]  # celery is untyped
def ingest_path(path: str, collection: str = "default", public: bool = True) -> list[int]:
    try:
        ids = [r.document.pk for r in do_ingest_path(Path(path), collection=collection, public=public)]
    except IngestError as exc:
        log.info("event=ingest_path_failed code=%s", exc.code)
        ids = []
    _refresh_bm25_when_idle(collection)
    return ids


def _refresh_bm25_when_idle(collection: str) -> None:
    """Rebuild the collection's BM25 index now rather than in the next visitor's search, once
    no other document of it is waiting: each build reads every chunk of the collection, so a
    build after each of N queued uploads would cost O(N^2). Skipped, the first search after the
    change builds it (the index is rebuilt lazily whenever the chunks changed)."""
    busy = Document.objects.filter(
        collection=collection, status__in=[Document.Status.PENDING, Document.Status.PROCESSING]
    ).exists()
    if not busy:
        get_bm25(collection).current()

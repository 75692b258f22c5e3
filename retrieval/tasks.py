"""Celery tasks of the knowledge base."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task

from retrieval.actions import do_ingest_path


@shared_task(name="retrieval.ingest_path")
def ingest_path(path: str, collection: str = "default", public: bool = True) -> list[int]:
    return [r.document.pk for r in do_ingest_path(Path(path), collection=collection, public=public)]

"""Curated Q&A pairs written by staff, imported as training examples with their sources.

A pair names the knowledge-base documents its answer relies on, in the order its citations
number them ([1] is the first). Each becomes a source as serving would show it to the model:
the document's passage nearest to the question (by the stored chunk embeddings), so the prompt
a fine-tuned model learns from looks like the prompts it will answer at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction

from assistant.learning.dataset import DatasetError
from assistant.models import TrainingExample
from inference.services import get_embedder
from retrieval.models import Chunk, Document


def _document(name: str, collection: str) -> Document:
    document = (
        Document.objects.filter(collection=collection, source__endswith=name, status=Document.Status.READY)
        .order_by("-id")
        .first()
    )
    if document is None:
        raise DatasetError(f"No ready document named {name!r} in collection {collection!r}; ingest it first.")
    return document


def _best_chunk(document: Document, query: np.ndarray) -> Chunk:
    chunks = list(document.chunks.exclude(embedding=None).order_by("ordinal"))
    if not chunks:
        raise DatasetError(f"Document {document.title!r} has no embedded passages.")
    scores = [float(np.frombuffer(bytes(c.embedding), dtype=np.float32) @ query) for c in chunks]
    return chunks[int(np.argmax(scores))]


def import_curated(path: str | Path, *, collection: str = "default", user=None) -> int:
    """Import `{"question", "answer", "documents": [...]}` lines; returns how many were added.
    A line already imported (same question and answer) is skipped, so re-running is safe."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not (isinstance(row["question"], str) and isinstance(row["answer"], str)):
                raise TypeError("question and answer must be text")
            if not all(isinstance(d, str) for d in row.get("documents", [])):
                raise TypeError("documents must be file names")
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}, line {number}: {exc}") from exc
        rows.append(row)
    vectors = get_embedder().embed([r["question"] for r in rows]) if rows else []
    added = 0
    with transaction.atomic():
        for row, vector in zip(rows, vectors, strict=True):
            question, answer = row["question"].strip(), row["answer"].strip()
            if TrainingExample.objects.filter(
                source=TrainingExample.Source.CURATED, question=question, answer=answer
            ).exists():
                continue
            sources = []
            for n, name in enumerate(row.get("documents", []), start=1):
                document = _document(name, collection)
                chunk = _best_chunk(document, np.asarray(vector, dtype=np.float32))
                sources.append(
                    {
                        "n": n,
                        "title": document.title,
                        "url": f"/kb/{document.pk}/",
                        "section": chunk.section,
                        "text": chunk.text,
                    }
                )
            TrainingExample.objects.create(
                source=TrainingExample.Source.CURATED,
                question=question,
                answer=answer,
                sources=sources,
                approved_by=user,
            )
            added += 1
    return added

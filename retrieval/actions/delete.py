"""Deleting documents: the row, its chunks, their vectors and the stored original."""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import transaction

from inference.services import get_embedder
from retrieval.index import get_index
from retrieval.models import Chunk, Document


def do_delete_document(document: Document) -> None:
    """Remove a document, its chunks and their vectors (and its stored original)."""
    ids = list(document.chunks.values_list("id", flat=True))
    with transaction.atomic():
        document.delete()
        if ids:
            embedder_dim = _dimension_of(ids[0])
            if embedder_dim:
                get_index(document.collection, embedder_dim).replace(ids, [], np.zeros((0, embedder_dim)))
    if document.original:
        original = settings.DATA_DIR / "media" / document.original
        original.unlink(missing_ok=True)
        try:
            original.parent.rmdir()
        except OSError:
            pass


def _dimension_of(chunk_id: int) -> int:
    """The vector dimension of the index holding a chunk, without loading the embedder."""
    row = Chunk.objects.filter(pk=chunk_id).values_list("embedding", flat=True).first()
    return len(bytes(row)) // 4 if row else get_embedder().dim

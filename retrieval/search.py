"""Dense search over the knowledge base (hybrid BM25 + dense comes with the knowledge-base issue)."""

from __future__ import annotations

from dataclasses import dataclass

from inference.services import get_embedder
from retrieval.index import get_index
from retrieval.models import Chunk


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    title: str
    url: str
    section: str
    anchor: str
    text: str
    score: float


def search(query: str, *, collection: str = "default", k: int = 5) -> list[Hit]:
    """The k chunks most similar to `query`, best first, with cosine scores."""
    embedder = get_embedder()
    query_vector = embedder.embed([query])[0]  # (dim,)
    ids, scores = get_index(collection, embedder.dim).search(query_vector, k)
    ranked = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    # The index may briefly hold ids whose rows were just deleted: skip them.
    chunks = Chunk.objects.select_related("document").in_bulk([i for i, _ in ranked])
    hits = []
    for chunk_id, score in ranked:
        chunk = chunks.get(chunk_id)
        if chunk is None or chunk.document.collection != collection:
            continue
        document = chunk.document
        url = document.url or (f"/kb/{document.pk}/" + (f"#{chunk.anchor}" if chunk.anchor else ""))
        hits.append(
            Hit(
                chunk_id=chunk_id,
                document_id=document.pk,
                title=document.title,
                url=url,
                section=chunk.section,
                anchor=chunk.anchor,
                text=chunk.text,
                score=score,
            )
        )
    return hits

"""Search over the knowledge base: dense (FAISS) + lexical (BM25), exclusion-aware, fused.

One query goes through the same steps whatever the corpus (the product's database and index,
or the evaluation command's passages in memory, see `retrieve`):

1. Query handling (`retrieval.query`): split what the query asks about from what it excludes
   ("Aaron's profile, but don't mention Moses"). Both retrievers search on the positive part.
2. Candidates: the top `depth` of each retriever, each candidate then scored by both (a
   dense-only candidate still gets its BM25 score and vice versa), against the positive part
   and against each excluded aspect.
3. Relevance per retriever = its score for the positive part - w * its best score for an
   excluded aspect (same scorer, same units).
4. Fusion of the two relevances (weighted sum of their z-scores over the pool by default;
   weighted RRF available), optional MMR.

Knobs (settings, read with defaults): RETRIEVAL_DEPTH (100 per retriever: more costs one
longer BM25 sort and DB fetch, recall@10 is already 1.0 on the eval set at 100),
RETRIEVAL_EXCLUSION_WEIGHT (0.5), RETRIEVAL_FUSION ("zscore" | "rrf"), RETRIEVAL_DENSE_WEIGHT
(0.7: see benchmarks/RESULTS.md), RETRIEVAL_RRF_K (60).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from django.conf import settings
from django.db.models import Q

from inference.base import Embedder
from inference.services import get_embedder
from retrieval.bm25 import BM25Index, base_language, get_bm25
from retrieval.fusion import exclusion_relevance, fuse, mmr_select, ranks
from retrieval.index import get_index, gpu_count
from retrieval.models import Chunk, Document
from retrieval.query import ParsedQuery, parse_query

MODES = ("dense", "bm25", "hybrid")
# The most neighbours one FAISS search may ask a GPU index for (faiss-gpu's limit for k).
GPU_MAX_K = 2048


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. `score` is the value the hits are ranked by. In hybrid mode it is
    `fused_score` (weighted z-scores over the candidate pool: comparable within one result
    list, not across queries). In dense or bm25 mode it is that retriever's score minus the
    exclusion penalty, i.e. `dense_score` (cosine) or `bm25_score` when the query excludes
    nothing. With MMR the order also weighs diversity, so `score` need not decrease down the
    list. For confidence, use the raw `dense_score` (cosine to the positive query, -1..1) and
    `bm25_score` (0 = no shared term); None where that retriever was not consulted."""

    chunk_id: int
    document_id: int
    title: str
    url: str
    section: str
    anchor: str
    text: str
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    fused_score: float | None = None
    rank_dense: int | None = None  # 1-based rank in the dense list of candidates
    rank_bm25: int | None = None
    page: int | None = None
    kind: str = "text"
    language: str = "en"


@dataclass(frozen=True)
class RankingParams:
    depth: int = 100
    exclusion_weight: float = 0.5
    fusion: str = "zscore"
    dense_weight: float = 0.7
    rrf_k: float = 60.0
    query_handling: bool = True  # off only to measure what it gives (eval ablation)

    @classmethod
    def from_settings(cls) -> RankingParams:
        return cls(
            depth=int(getattr(settings, "RETRIEVAL_DEPTH", cls.depth)),
            exclusion_weight=float(getattr(settings, "RETRIEVAL_EXCLUSION_WEIGHT", cls.exclusion_weight)),
            fusion=str(getattr(settings, "RETRIEVAL_FUSION", cls.fusion)),
            dense_weight=float(getattr(settings, "RETRIEVAL_DENSE_WEIGHT", cls.dense_weight)),
            rrf_k=float(getattr(settings, "RETRIEVAL_RRF_K", cls.rrf_k)),
        )


@dataclass(frozen=True)
class Ranked:
    id: int
    score: float
    dense_score: float | None
    bm25_score: float | None
    fused_score: float | None
    rank_dense: int | None
    rank_bm25: int | None


class Corpus(Protocol):
    """What `retrieve` needs from a collection of passages."""

    language: str | None

    def dense_top(self, vector: np.ndarray, n: int) -> tuple[list[int], list[float]]: ...

    def lexical(self) -> BM25Index: ...

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray | None]:
        """Stored vectors of the ids that may be returned (filters applied; an id left out is
        dropped); None for a passage stored without one."""
        ...


def _dense_scores(
    ids: list[int], known: dict[int, float], vectors: dict[int, np.ndarray | None], query: np.ndarray
) -> np.ndarray:
    out = np.full(len(ids), np.nan)
    for j, i in enumerate(ids):
        if i in known:
            out[j] = known[i]
        elif (v := vectors.get(i)) is not None:
            out[j] = float(v @ query)
    return out


def _excluded_dense(
    ids: list[int], vectors: dict[int, np.ndarray | None], excluded: np.ndarray
) -> np.ndarray:
    out = np.full(len(ids), np.nan)
    for j, i in enumerate(ids):
        if (v := vectors.get(i)) is not None:
            out[j] = float((excluded @ v).max())  # (m,) -> the most similar excluded aspect
    return out


def _fill(values: np.ndarray, fill: str) -> np.ndarray:
    """Unknown scores (nan): at the pool minimum for a positive score (not found = not
    relevant), at the pool mean for an excluded one (no evidence either way)."""
    known = values[~np.isnan(values)]
    if known.size == 0:
        return np.zeros_like(values)
    return np.where(np.isnan(values), known.min() if fill == "min" else known.mean(), values)


def retrieve(
    corpus: Corpus,
    query: str,
    *,
    embedder: Embedder | None,
    mode: str = "hybrid",
    k: int = 5,
    params: RankingParams | None = None,
    mmr: bool = False,
    mmr_lambda: float = 0.7,
) -> list[Ranked]:
    """The k best passages of `corpus` for `query`, best first (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    params = params or RankingParams.from_settings()
    parsed = parse_query(query) if params.query_handling else ParsedQuery(text=query, positive=query)
    language = corpus.language
    use_dense, use_bm25 = mode != "bm25", mode != "dense"

    known_dense: dict[int, float] = {}
    pool: dict[int, None] = {}  # ordered set of candidate ids
    query_vectors: np.ndarray | None = None
    if use_dense:
        if embedder is None:
            raise ValueError(f"mode {mode!r} needs an embedder")
        # One batch: the positive part first, then each excluded aspect.
        query_vectors = embedder.embed([parsed.positive, *parsed.excluded])  # (1 + m, dim)
        ids, scores = corpus.dense_top(query_vectors[0], params.depth)
        known_dense = dict(zip(ids, scores, strict=True))
        pool.update(dict.fromkeys(ids))
    lexical = corpus.lexical() if use_bm25 else None
    if lexical is not None:
        positive_all = lexical.scores(parsed.positive, language)
        top_ids, _ = lexical.best(positive_all, params.depth, language)
        pool.update(dict.fromkeys(int(i) for i in top_ids))
    vectors = corpus.vectors(list(pool))
    ids = [i for i in pool if i in vectors]
    if not ids:
        return []

    excluded = parsed.excluded
    dense_pos = dense_neg = bm25_pos = bm25_neg = None
    if query_vectors is not None:
        dense_pos = _fill(_dense_scores(ids, known_dense, vectors, query_vectors[0]), "min")
        if excluded:
            dense_neg = _fill(_excluded_dense(ids, vectors, query_vectors[1:]), "mean")
    if lexical is not None:
        bm25_pos = lexical.pick(positive_all, ids)
        if excluded:
            bm25_neg = np.max([lexical.pick(lexical.scores(x, language), ids) for x in excluded], axis=0)

    w = params.exclusion_weight
    if dense_pos is not None and bm25_pos is not None:
        fused = fuse(
            exclusion_relevance(dense_pos, dense_neg, w),
            exclusion_relevance(bm25_pos, bm25_neg, w),
            method=params.fusion,
            dense_weight=params.dense_weight,
            rrf_k=params.rrf_k,
        )
        relevance = fused
    elif dense_pos is not None:
        fused, relevance = None, exclusion_relevance(dense_pos, dense_neg, w)
    else:
        assert bm25_pos is not None
        fused, relevance = None, exclusion_relevance(bm25_pos, bm25_neg, w)

    order = list(np.argsort(-relevance, kind="stable"))
    if mmr:
        # Diversify among the leading candidates only, so MMR trades a little relevance for
        # variety rather than reaching down to passages the retrievers barely matched.
        head = order[: max(20, 4 * k)]
        picked = mmr_select(relevance[head], [vectors[ids[p]] for p in head], k, mmr_lambda)
        order = [head[p] for p in picked]
    rank_dense = ranks(dense_pos) if dense_pos is not None else None
    rank_bm25 = ranks(bm25_pos) if bm25_pos is not None else None
    return [
        Ranked(
            id=ids[p],
            score=float(relevance[p]),
            dense_score=float(dense_pos[p]) if dense_pos is not None else None,
            bm25_score=float(bm25_pos[p]) if bm25_pos is not None else None,
            fused_score=float(fused[p]) if fused is not None else None,
            rank_dense=int(rank_dense[p]) if rank_dense is not None else None,
            rank_bm25=int(rank_bm25[p])
            if rank_bm25 is not None and bm25_pos is not None and bm25_pos[p] > 0
            else None,
        )
        for p in order[:k]
    ]


class KnowledgeBase:
    """A collection in the database and its indexes, as a `Corpus`: only chunks of READY
    documents in the collection (and language, if given; and public, if `public_only`) are ever
    returned.

    Private chunks are left out of each retriever's candidates, not only of the result, so a
    public-only search finds its k hits however many private passages would rank above them:
    the vector search over-fetches by the number of private chunks in the collection (exact, up
    to GPU_MAX_K on a GPU index) and BM25 ranks with their scores set to zero. Cost: one query
    for the private chunk ids (none when the collection has no private documents) and a dense
    search that much deeper (~0.08 ms per 1,000 extra neighbours on the exact index)."""

    def __init__(self, collection: str, language: str | None, dim: int, *, public_only: bool = False) -> None:
        self.collection = collection
        self.language = base_language(language) if language else None
        self.dim = dim
        self.public_only = public_only
        self.chunks: dict[int, Chunk] = {}
        self._private: np.ndarray | None = None

    def private_ids(self) -> np.ndarray:
        """(p,) int64, sorted: chunk ids of the collection's private documents when this search
        is public-only (else none), read once per search."""
        if self._private is None:
            if not self.public_only:
                self._private = np.zeros(0, dtype=np.int64)
            else:
                rows = Chunk.objects.filter(document__collection=self.collection, document__public=False)
                self._private = np.sort(np.fromiter(rows.values_list("id", flat=True), dtype=np.int64))
        return self._private

    def dense_top(self, vector: np.ndarray, n: int) -> tuple[list[int], list[float]]:
        # The vector index knows no languages or visibility: over-fetch so a filtered search
        # keeps enough (by the private chunks' number, the top n + p hold n visible ones).
        private = self.private_ids()
        keep = n * 4 if self.language else n
        fetch = keep + len(private)
        if gpu_count() > 0:
            fetch = min(fetch, GPU_MAX_K)
        ids, scores = get_index(self.collection, self.dim).search(vector, fetch)
        hidden = np.isin(ids[0], private)
        pairs = [
            (int(i), float(s)) for i, s, h in zip(ids[0], scores[0], hidden, strict=True) if i >= 0 and not h
        ][:keep]
        return [i for i, _ in pairs], [s for _, s in pairs]

    def lexical(self) -> BM25Index:
        index = get_bm25(self.collection).current()
        private = self.private_ids()
        return _Visible(index, ~np.isin(index.ids, private)) if len(private) else index

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray | None]:
        # The indexes may briefly hold ids whose rows were just deleted or are being replaced:
        # the database decides what is searchable (and, for a public-only search, visible: a
        # document made private since private_ids() was read is left out here).
        rows = Chunk.objects.select_related("document").filter(
            id__in=list(ids), document__collection=self.collection, document__status=Document.Status.READY
        )
        if self.public_only:
            rows = rows.filter(document__public=True)
        if self.language:
            lang = self.language
            rows = rows.filter(
                Q(document__language__iexact=lang)
                | Q(document__language__istartswith=f"{lang}-")
                | Q(document__language__istartswith=f"{lang}_")
            )
        self.chunks = {c.pk: c for c in rows}
        return {pk: _vector(c.embedding, self.dim) for pk, c in self.chunks.items()}


class _Visible(BM25Index):
    """A collection's BM25 index with some rows out of sight: they score 0 when candidates are
    taken, so `best` fills its n from the visible rows. Shares the index's arrays (no copy)."""

    def __init__(self, index: BM25Index, visible: np.ndarray) -> None:
        # Not BM25Index.__init__: that rebuilds the id -> position map, O(rows) per search.
        self.model, self.ids, self.languages = index.model, index.ids, index.languages
        self._position = index._position
        self.visible = visible  # (n,) bool, by row

    def best(self, scores: np.ndarray, n: int, language: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        return super().best(np.where(self.visible, scores, 0.0), n, language)


def _vector(blob: bytes | memoryview | None, dim: int) -> np.ndarray | None:
    if not blob:
        return None
    vector = np.frombuffer(bytes(blob), dtype=np.float32)
    return vector if vector.shape == (dim,) else None  # stored by another model: unusable


def search(
    query: str,
    *,
    collection: str = "default",
    k: int = 5,
    language: str | None = None,
    mode: str = "hybrid",
    mmr: bool = False,
    mmr_lambda: float = 0.7,
    public_only: bool = True,
) -> list[Hit]:
    """The k chunks that best answer `query`, best first, each with its scores (see Hit).

    `language` keeps only documents in that language (its base code: "en" matches "en-GB");
    `mode` "dense" or "bm25" uses one retriever; `mmr` diversifies the k hits using the stored
    chunk embeddings (`mmr_lambda` 1.0 = pure relevance, lower = more diverse). `public_only`
    (the default) leaves out documents ingested as private, before the top k is taken (see
    KnowledgeBase): whatever reaches a visitor, a customer or a published page searches so;
    only staff, who may read private documents, pass False.
    """
    # BM25 alone needs no model; MMR needs only the vector size, to read stored embeddings.
    embedder = get_embedder() if mode != "bm25" or mmr else None
    kb = KnowledgeBase(collection, language, embedder.dim if embedder else 0, public_only=public_only)
    ranked = retrieve(
        kb,
        query,
        embedder=embedder if mode != "bm25" else None,
        mode=mode,
        k=k,
        mmr=mmr,
        mmr_lambda=mmr_lambda,
    )
    return [_hit(kb.chunks[r.id], r) for r in ranked]


def _hit(chunk: Chunk, r: Ranked) -> Hit:
    document = chunk.document
    url = document.url or (f"/kb/{document.pk}/" + (f"#{chunk.anchor}" if chunk.anchor else ""))
    return Hit(
        chunk_id=chunk.pk,
        document_id=document.pk,
        title=document.title,
        url=url,
        section=chunk.section,
        anchor=chunk.anchor,
        text=chunk.text,
        score=r.score,
        dense_score=r.dense_score,
        bm25_score=r.bm25_score,
        fused_score=r.fused_score,
        rank_dense=r.rank_dense,
        rank_bm25=r.rank_bm25,
        page=chunk.page,
        kind=chunk.kind,
        language=document.language,
    )

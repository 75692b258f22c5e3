"""Hybrid search: query handling, both retrievers, fusion, filters, MMR and the BM25 store."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from retrieval import index as retrieval_index
from retrieval.actions.ingest import do_ingest_file, do_ingest_path
from retrieval.bm25 import get_bm25
from retrieval.fusion import mmr_select, reciprocal_ranks, zscore
from retrieval.models import Chunk, Document
from retrieval.query import parse_query
from retrieval.search import search
from tests.conftest import DEMO_DIR

# --- Query handling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "positive", "excluded"),
    [
        ("Aaron's profile, but don't mention Moses.", "Aaron's profile.", ("Moses",)),
        (
            "Justice in To Kill a Mockingbird, excluding the trial.",
            "Justice in To Kill a Mockingbird.",
            ("the trial",),
        ),
        (
            "How did X grow (excluding its OVA adaptations) in Japan?",
            "How did X grow in Japan?",
            ("its OVA adaptations",),
        ),
        (
            "Provide an introduction to Aarhus without Denmark.",
            "Provide an introduction to Aarhus.",
            ("Denmark",),
        ),
        ("Which plans are there other than fibre?", "Which plans are there?", ("fibre",)),
        ("Alexis Carrel, but not including the Nobel Prize", "Alexis Carrel", ("the Nobel Prize",)),
        ("Mark Twain, avoiding any mention of Huckleberry Finn.", "Mark Twain.", ("Huckleberry Finn",)),
        ("The film (Exclude specific details about its production).", "The film.", ("its production",)),
        ("Compare A (excluding B) and C (excluding D).", "Compare A and C.", ("B", "D")),
        (
            "Renaissance science, without focusing on the role of Galileo?",
            "Renaissance science?",
            ("the role of Galileo",),
        ),
    ],
)
def test_exclusion_phrasings_split_the_topic_from_what_to_leave_out(query, positive, excluded):
    parsed = parse_query(query)
    assert parsed.positive == positive
    assert parsed.excluded == excluded


@pytest.mark.parametrize(
    "query",
    [
        "How do I reset my router without losing my settings?",  # manner, not a topic to leave out
        "How can I avoid late fees?",
        "Why is my wifi not working?",
        "Is the router free or not?",
        "What is included in the Stream 500 plan?",
    ],
)
def test_ordinary_questions_have_no_exclusions(query):
    parsed = parse_query(query)
    assert parsed.positive == query and not parsed.has_exclusions


# --- Fusion arithmetic ----------------------------------------------------------------------------


def test_zscore_and_reciprocal_ranks():
    assert zscore(np.array([3.0, 3.0])).tolist() == [0.0, 0.0]
    assert zscore(np.array([1.0, 3.0])).tolist() == [-1.0, 1.0]
    assert reciprocal_ranks(np.array([0.2, 0.9, 0.5]), k=60).tolist() == [1 / 63, 1 / 61, 1 / 62]


def test_mmr_prefers_a_different_passage_over_a_near_duplicate():
    a, b = np.array([1.0, 0.0], dtype=np.float32), np.array([0.0, 1.0], dtype=np.float32)
    # Candidates 0 and 1 are the same passage; 2 is a little less relevant but different; 3 is
    # the pool's weakest (relevance is min-max scaled over the pool).
    relevance = np.array([1.0, 0.99, 0.9, 0.0])
    assert mmr_select(relevance, [a, a, b, b], k=2, lambda_=0.7) == [0, 2]
    assert mmr_select(relevance, [a, a, b, b], k=2, lambda_=1.0) == [0, 1]
    no_vector = mmr_select(relevance, [a, None, b, b], k=2, lambda_=0.7)
    assert no_vector == [0, 1]  # a passage without a vector competes on relevance alone


# --- The demo knowledge base (ingested once for this module: it takes seconds) -------------------


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker, embedder, isolated_index):
    with django_db_blocker.unblock():
        _clear_default(isolated_index)
        do_ingest_path(DEMO_DIR)
        yield
        Document.objects.filter(collection="default").delete()
        _clear_default(isolated_index)


def _clear_default(index_dir: Path) -> None:
    retrieval_index._indexes.clear()
    for path in index_dir.glob("default.*"):
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()


def source_of(hit) -> str:
    return Path(Document.objects.get(pk=hit.document_id).source).name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("can I get my money back", "refunds.md"),  # paraphrases: few or no shared words
        ("how do I stop my kids using the internet at night", "parental-controls.md"),
        ("I am moving to a new flat", "moving-house.md"),
        ("is there a download limit", "plans-and-speeds.md"),
        ("pinhole button", "router-reset.md"),  # keywords
        ("2.4 GHz versus 5 GHz channels", "wifi-troubleshooting.md"),
        ("cooling-off period", "refunds.md"),
    ],
)
def test_hybrid_finds_the_document_that_answers(demo, query, expected):
    hits = search(query, k=3)
    assert source_of(hits[0]) == expected


@pytest.mark.django_db
def test_single_retriever_modes_use_only_their_retriever(demo):
    lexical = search("pinhole button factory reset", mode="bm25", k=3)
    assert source_of(lexical[0]) == "router-reset.md"
    assert all(h.dense_score is None and h.bm25_score is not None for h in lexical)
    dense = search("my wifi signal is weak upstairs", mode="dense", k=3)
    assert source_of(dense[0]) == "wifi-troubleshooting.md"
    assert all(h.bm25_score is None and h.dense_score is not None for h in dense)
    with pytest.raises(ValueError, match="mode must be one of"):
        search("router", mode="fuzzy")


@pytest.mark.django_db
def test_each_hit_carries_its_scores_best_first(demo):
    hits = search("How do I factory reset my router?", k=5)
    assert len(hits) == 5
    for hit in hits:
        assert hit.score == hit.fused_score
        assert -1.0 <= hit.dense_score <= 1.0 and hit.bm25_score >= 0.0
        assert hit.rank_dense >= 1 and (hit.rank_bm25 is None or hit.rank_bm25 >= 1)
        assert hit.kind == "text" and hit.language == "en" and hit.page is None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].bm25_score > 0 and hits[0].rank_dense <= 3


@pytest.mark.django_db
def test_mmr_returns_more_distinct_documents(demo):
    plain = search("How do I factory reset my router?", k=5)
    diverse = search("How do I factory reset my router?", k=5, mmr=True, mmr_lambda=0.5)
    assert diverse[0].chunk_id == plain[0].chunk_id  # the best hit stays first
    assert len({h.document_id for h in diverse}) > len({h.document_id for h in plain})


# --- Small collections of their own (a fresh index per test: ids never collide) -------------------


def ingest(tmp_path: Path, collection: str, name: str, text: str, language: str = "en") -> Document:
    path = tmp_path / collection / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    document = do_ingest_file(path, collection=collection).document
    if document.language != language:
        document.language = language
        document.save(update_fields=["language", "updated_at"])
    return document


BACKGROUND = [
    "The history of the printing press",
    "Aaron Copland and American music",
    "How tides follow the moon",
    "Moses Mendelssohn and the Enlightenment",
    "Growing tomatoes on a balcony",
    "The Egyptian pyramids at Giza",
]


@pytest.fixture
def collection() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_passages_about_the_excluded_aspect_are_demoted(embedder, tmp_path, collection, mode):
    # Scores are weighed against the candidate pool, so give it the background a real
    # collection has (in a pool of two, the exclusion only breaks near-ties: see fusion.py).
    for n, topic in enumerate(BACKGROUND):
        ingest(
            tmp_path, collection, f"background{n}.md", f"# {topic}\n\n{topic} is described here in detail.\n"
        )
    about_both = ingest(
        tmp_path,
        collection,
        "aaron-moses.md",
        "# Aaron\n\nAaron was the elder brother of Moses. Aaron and Moses led the Israelites out of Egypt; "
        "Moses spoke to Pharaoh and Aaron spoke for Moses.\n",
    )
    about_aaron = ingest(
        tmp_path,
        collection,
        "aaron-priest.md",
        "# Aaron the priest\n\nAaron was anointed the first high priest; his sons served with him and "
        "his descendants kept the priesthood.\n",
    )
    plain = [h.document_id for h in search("Aaron and Moses", collection=collection, mode=mode, k=10)]
    assert plain[0] == about_both.pk
    excluding = search("Aaron's life, but don't mention Moses", collection=collection, mode=mode, k=10)
    order = [h.document_id for h in excluding]
    assert order.index(about_aaron.pk) < order.index(about_both.pk)


@pytest.mark.django_db
def test_language_and_collection_filters(embedder, tmp_path, collection):
    english = ingest(
        tmp_path, collection, "billing.md", "# Billing\n\nWe send your invoice every month by email.\n"
    )
    german = ingest(
        tmp_path,
        collection,
        "rechnung.md",
        "# Rechnung\n\nWir senden Ihre Rechnung jeden Monat per E-Mail.\n",
        language="de",
    )
    other = ingest(tmp_path, collection + "x", "billing.md", "# Billing\n\nInvoices are sent monthly.\n")

    assert {h.document_id for h in search("invoice email", collection=collection, k=5)} == {
        english.pk,
        german.pk,
    }
    assert {h.document_id for h in search("Rechnung", collection=collection, language="de", k=5)} == {
        german.pk
    }
    assert {h.document_id for h in search("Rechnung", collection=collection, language="en", k=5)} == {
        english.pk
    }
    assert {h.document_id for h in search("invoice", collection=collection + "x", k=5)} == {other.pk}
    assert all(h.language == "de" for h in search("monthly invoice", collection=collection, language="de-AT"))


@pytest.mark.django_db
def test_only_ready_documents_are_returned(embedder, tmp_path, collection):
    document = ingest(
        tmp_path, collection, "promo.md", "# Spring promotion\n\nThree months of Stream 500 free.\n"
    )
    assert search("spring promotion", collection=collection)
    document.status = Document.Status.PROCESSING
    document.save(update_fields=["status", "updated_at"])
    for mode in ("hybrid", "dense", "bm25"):
        assert search("spring promotion", collection=collection, mode=mode) == []


@pytest.mark.django_db
def test_bm25_store_rebuilds_after_a_document_changes(embedder, tmp_path, collection, isolated_index):
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nThe zebracorn cable is grey.\n")
    do_ingest_file(path, collection=collection)
    assert len(search("zebracorn", collection=collection, mode="bm25")) == 1
    first = {p.name for p in (isolated_index / f"{collection}.bm25").iterdir() if p.is_dir()}

    path.write_text("# Notes\n\nThe unicornfish cable is blue.\n")
    do_ingest_file(path, collection=collection)
    assert search("zebracorn", collection=collection, mode="bm25") == []
    [hit] = search("unicornfish", collection=collection, mode="bm25")
    assert "blue" in hit.text
    second = {p.name for p in (isolated_index / f"{collection}.bm25").iterdir() if p.is_dir()}
    assert len(second) == 1 and second != first  # the old build is gone
    get_bm25(collection)._loaded = None  # another process: loads the persisted store
    assert len(search("unicornfish", collection=collection, mode="bm25")) == 1


@pytest.mark.django_db
def test_mmr_works_with_chunks_stored_without_embeddings(embedder, tmp_path, collection):
    for n in range(3):
        ingest(
            tmp_path,
            collection,
            f"tip{n}.md",
            f"# Router tip {n}\n\nRestart the router to fix problem {n}.\n",
        )
    Chunk.objects.filter(document__collection=collection).update(embedding=None)
    hits = search("restart the router", collection=collection, k=3, mmr=True)
    assert len(hits) == 3
    assert all(h.dense_score is not None for h in hits)  # from the vector index itself

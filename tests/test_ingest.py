from __future__ import annotations

import numpy as np
import pytest

from retrieval.actions import do_ingest_file
from retrieval.chunking import chunk_markdown
from retrieval.errors import IngestError
from retrieval.index import get_index
from retrieval.models import Chunk, Document
from retrieval.search import search
from tests.conftest import DEMO_DIR

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_demo_docs_become_ready_documents_with_sectioned_chunks(demo_kb, embedder):
    assert len(demo_kb) == len(list(DEMO_DIR.glob("*.md"))) >= 12
    assert Document.objects.filter(status="ready").count() == len(demo_kb)
    reset = Document.objects.get(source__endswith="router-reset.md")
    sections = list(reset.chunks.values_list("section", flat=True))
    assert all(s.startswith(reset.title) for s in sections)
    assert any(" > " in s for s in sections)
    assert len(get_index("default", embedder.dim)) == Chunk.objects.count()


def test_search_finds_the_document_that_answers(demo_kb):
    hits = search("How do I factory reset my router?", k=3)
    assert hits[0].title == Document.objects.get(source__endswith="router-reset.md").title
    assert hits[0].score > hits[-1].score or len(hits) == 1
    assert hits[0].url.startswith(f"/kb/{hits[0].document_id}/")


def test_index_top_k_agrees_with_exact_numpy_search(demo_kb, embedder):
    chunks = list(Chunk.objects.order_by("id"))
    matrix = embedder.embed([c.text for c in chunks])  # (n, dim)
    query = embedder.embed(["When will my refund arrive?"])[0]
    exact = [chunks[i].id for i in np.argsort(-matrix @ query)[:5]]
    ids, _ = get_index("default", embedder.dim).search(query, 5)
    assert list(ids[0]) == exact


def test_reingesting_unchanged_document_does_nothing(demo_kb, embedder):
    path = DEMO_DIR / "refunds.md"
    before = set(Chunk.objects.filter(document__source__endswith="refunds.md").values_list("id", flat=True))
    result = do_ingest_file(path)
    assert not result.changed
    after = set(result.document.chunks.values_list("id", flat=True))
    assert before == after


def test_changed_document_replaces_its_chunks_and_vectors(demo_kb, embedder, tmp_path):
    doc = tmp_path / "promo.md"
    doc.write_text("# Spring promotion\n\nThe Spring promotion gives 3 months of Stream 500 free.\n")
    first = do_ingest_file(doc)
    old_ids = set(first.document.chunks.values_list("id", flat=True))
    doc.write_text("# Spring promotion\n\nThe Spring promotion has ended; ask about the Summer deal.\n")
    second = do_ingest_file(doc)
    assert second.changed and second.document.pk == first.document.pk
    new_ids = set(second.document.chunks.values_list("id", flat=True))
    assert old_ids.isdisjoint(new_ids)
    index = get_index("default", embedder.dim)
    assert len(index) == Chunk.objects.count()
    hits = search("Spring promotion", k=1)
    assert "ended" in hits[0].text


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("notes.exe", b"MZ\x90\x00", "unsupported_type"),
        ("latin1.md", "# Caf\u00e9\n\nna\u00efve".encode("latin-1"), "bad_encoding"),
        ("empty.md", b"   \n\n", "empty"),
    ],
)
def test_bad_files_fail_with_a_clear_error_and_a_recorded_status(db, embedder, tmp_path, name, content, code):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError) as caught:
        do_ingest_file(path)
    assert caught.value.code == code
    doc = Document.objects.get(source=str(path.resolve()))
    assert doc.status == "failed" and doc.error == caught.value.message


def test_missing_path_is_reported(db):
    from pathlib import Path

    from retrieval.actions import do_ingest_path

    with pytest.raises(IngestError, match="No such file"):
        do_ingest_path(Path("/nonexistent/parley-docs"))


def test_chunks_follow_headings_and_respect_the_size_limit():
    text = (
        "# Guide\n\nIntro line.\n\n## Setup\n\n"
        + ("Plug in the cable. " * 120)
        + "\n\n## Lights\n\nGreen is fine."
    )
    drafts = chunk_markdown(text, "Guide", size=60, overlap=10)
    assert {d.section for d in drafts} == {"Guide", "Guide > Setup", "Guide > Lights"}
    assert all(d.token_count <= 60 + 10 for d in drafts)
    assert [d.anchor for d in drafts if d.section == "Guide > Lights"] == ["lights"]

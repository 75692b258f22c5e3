from __future__ import annotations

import io

import numpy as np
import pytest

from core import jobs
from core.errors import DomainError
from retrieval.actions import ingest, store
from retrieval.actions.create import do_create_document_from_url
from retrieval.actions.ingest import do_ingest_file, do_ingest_path
from retrieval.chunking import chunk_markdown
from retrieval.errors import IngestError
from retrieval.index import VectorIndex, get_index
from retrieval.models import Chunk, Document
from retrieval.search import search
from tests.conftest import DEMO_DIR, bearer

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


@pytest.fixture
def calls(embedder, monkeypatch):
    """Counts embedder calls (texts per call) and index writes (ids added per write)."""
    seen: dict[str, list[int]] = {"embed": [], "replace": []}
    embed, replace = embedder.embed, VectorIndex.replace

    def counting_embed(texts):
        seen["embed"].append(len(texts))
        return embed(texts)

    def counting_replace(self, remove_ids, add_ids, vectors):
        seen["replace"].append(len(add_ids))
        return replace(self, remove_ids, add_ids, vectors)

    monkeypatch.setattr(embedder, "embed", counting_embed)
    monkeypatch.setattr(VectorIndex, "replace", counting_replace)
    return seen


def _chunk_ids(collection: str) -> dict[str, set[int]]:
    ids: dict[str, set[int]] = {}
    for source, chunk_id in Chunk.objects.filter(document__collection=collection).values_list(
        "document__source", "id"
    ):
        ids.setdefault(source.rsplit("/", 1)[-1], set()).add(chunk_id)
    return ids


def test_a_folder_is_ingested_in_groups_and_reruns_touch_only_what_changed(
    db, embedder, tmp_path, calls, monkeypatch
):
    monkeypatch.setattr(ingest, "GROUP_DOCUMENTS", 4)  # two groups, each with good and bad files
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a_hours.md").write_text("# Opening hours\n\nThe shop opens at 8:00 and closes at 22:00.\n")
    (folder / "b_latin1.md").write_bytes("# Caf\u00e9\n\nna\u00efve".encode("latin-1"))
    (folder / "c_refunds.txt").write_text("Refunds reach your account within five working days.\n")
    (folder / "d_empty.md").write_text("  \n\n ")
    (folder / "e_router.md").write_text((DEMO_DIR / "router-reset.md").read_text())
    (folder / "f_garbage.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    (folder / "g_delivery.md").write_text("# Delivery\n\nParcels are delivered by courier in two days.\n")
    with pytest.raises(IngestError) as caught:
        do_ingest_path(folder, collection="groups")
    assert caught.value.code == "bad_encoding"  # the first failure, after trying every file

    status = {d.source.rsplit("/", 1)[-1]: (d.status, d.error_code) for d in Document.objects.all()}
    good = ["a_hours.md", "c_refunds.txt", "e_router.md", "g_delivery.md"]
    assert all(status[name] == ("ready", "") for name in good)
    assert status["b_latin1.md"] == ("failed", "bad_encoding")
    assert status["d_empty.md"] == ("failed", "empty")
    assert status["f_garbage.pdf"] == ("failed", "malformed")
    assert all(d.error for d in Document.objects.filter(status="failed"))
    # One embedder call and one index write per group, not per document.
    assert len(calls["embed"]) == len(calls["replace"]) == 2
    ids = _chunk_ids("groups")
    assert set(ids) == set(good)
    assert set(get_index("groups", embedder.dim).ids()) == set().union(*ids.values())
    assert search("When does the shop close?", collection="groups", k=1)[0].title == "Opening hours"
    assert "five working days" in search("refund", collection="groups", mode="dense", k=1)[0].text

    calls["embed"].clear()
    calls["replace"].clear()
    with pytest.raises(IngestError):
        do_ingest_path(folder, collection="groups")
    assert calls == {"embed": [], "replace": []}  # unchanged files: nothing embedded or written
    assert _chunk_ids("groups") == ids

    (folder / "g_delivery.md").write_text("# Delivery\n\nParcels now arrive the next day.\n")
    with pytest.raises(IngestError):
        do_ingest_path(folder, collection="groups")
    after = _chunk_ids("groups")
    assert after["g_delivery.md"].isdisjoint(ids["g_delivery.md"])
    assert {k: v for k, v in after.items() if k != "g_delivery.md"} == {
        k: v for k, v in ids.items() if k != "g_delivery.md"
    }
    assert calls["embed"] == [len(after["g_delivery.md"])] and len(calls["replace"]) == 1
    assert set(get_index("groups", embedder.dim).ids()) == set().union(*after.values())
    assert "next day" in search("delivery", collection="groups", k=1)[0].text


def test_a_large_document_is_a_group_of_its_own_and_shows_progress(
    db, embedder, tmp_path, calls, monkeypatch
):
    monkeypatch.setattr(ingest, "GROUP_CHUNKS", 8)
    seen = []
    save_progress = store._progress

    def recording_progress(document, percent):
        seen.append((document.pk, percent))
        save_progress(document, percent)

    monkeypatch.setattr(store, "_progress", recording_progress)
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a_small.md").write_text("# Small\n\nA short note.\n")
    sections = [f"## Step {i}\n\n" + f"Step {i} of the procedure is explained here. " * 30 for i in range(12)]
    (folder / "b_big.md").write_text("# Big\n\n" + "\n\n".join(sections))
    (folder / "c_small.md").write_text("# Other\n\nAnother short note.\n")
    results = do_ingest_path(folder, collection="bigdoc")
    big = next(r for r in results if r.document.title == "Big")
    assert big.chunks > 8 and all(r.document.status == "ready" for r in results)
    assert calls["replace"] == [1, big.chunks, 1]  # the big one is stored on its own
    assert (big.document.pk, 95) in seen  # and its progress was saved as it was embedded


def test_an_upload_over_the_limit_is_refused_with_its_own_status(client, knowledge_manager, settings):
    assert isinstance(IngestError("x"), DomainError) and IngestError("x").status == 400
    settings.INGEST_MAX_FILE_BYTES = 10
    upload = io.BytesIO(b"x" * 100)
    upload.name = "big.txt"
    response = client.post("/api/documents", {"file": upload}, **bearer(knowledge_manager))
    assert response.status_code == 413  # IngestError(code="too_large") says so, not the API
    error = response.json()["error"]
    assert error == {"code": "too_large", "message": "big.txt is 100 bytes; the limit is 10."}


def test_processing_is_queued_by_task_name_once_committed(monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(jobs, "enqueue", lambda name, *args: queued.append((name, *args)))
    with django_capture_on_commit_callbacks(execute=True):
        document = do_create_document_from_url("https://example.com/page")
        assert queued == []
    assert queued == [("retrieval.process_document", document.pk)]

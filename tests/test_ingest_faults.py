"""Bad input and faults during ingestion: each bad file fails alone, with a clear status."""

from __future__ import annotations

import io
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile

import pytest

from retrieval.actions.ingest import do_ingest_path
from retrieval.errors import IngestError
from retrieval.index import VectorIndex, get_index
from retrieval.models import Chunk, Document
from tests.conftest import DEMO_DIR, REPO, LiveParley, free_port

pytestmark = pytest.mark.slow


def _zip_bomb() -> bytes:
    """A .docx whose one member claims (and would inflate to) ~1 GB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(1024):
                member.write(block)
    return buffer.getvalue()


@pytest.mark.django_db
def test_a_batch_with_bad_files_still_ingests_every_good_one(embedder, isolated_index, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "good.md").write_text((DEMO_DIR / "refunds.md").read_text())
    (folder / "notes.txt").write_text("Opening hours are 8:00 to 22:00 every day.\n\nWe answer within a day.")
    (folder / "garbage.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (folder / "empty.md").write_text("   \n\n  ")
    (folder / "bomb.docx").write_bytes(_zip_bomb())
    with open(folder / "huge.txt", "wb") as fh:
        fh.truncate(500 * 1024 * 1024)  # sparse: 500 MB long, no disk used, never read
    with pytest.raises(IngestError):
        do_ingest_path(folder)
    status = {d.source.rsplit("/", 1)[-1]: (d.status, d.error_code) for d in Document.objects.all()}
    assert status["good.md"] == ("ready", "") and status["notes.txt"] == ("ready", "")
    assert status["garbage.pdf"] == ("failed", "malformed")
    assert status["binary.txt"] == ("failed", "binary_content")
    assert status["empty.md"] == ("failed", "empty")
    assert status["bomb.docx"] == ("failed", "zip_bomb")
    assert status["huge.txt"] == ("failed", "too_large")
    assert all(d.error for d in Document.objects.filter(status="failed"))


@pytest.mark.django_db
def test_a_group_whose_index_write_fails_stores_nothing_and_a_rerun_completes_it(
    embedder, tmp_path, monkeypatch
):
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("billing-and-invoices.md", "refunds.md", "router-reset.md"):
        (folder / name).write_text((DEMO_DIR / name).read_text())

    def disk_full(self, index):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(VectorIndex, "_save", disk_full)
        with pytest.raises(IngestError) as caught:
            do_ingest_path(folder, collection="atomic")
    assert caught.value.code == "internal"
    documents = Document.objects.filter(collection="atomic")
    assert {(d.status, d.error_code) for d in documents} == {("failed", "internal")}
    assert not Chunk.objects.filter(document__collection="atomic").exists()  # rolled back together
    index = get_index("atomic", embedder.dim)
    assert len(index) == 0

    results = do_ingest_path(folder, collection="atomic")
    assert len(results) == 3 and all(r.changed and r.document.status == "ready" for r in results)
    chunks = Chunk.objects.filter(document__collection="atomic")
    assert chunks.count() == sum(r.chunks for r in results)
    assert list(index.ids()) == sorted(chunks.values_list("id", flat=True))


def test_ingestion_killed_midway_completes_on_rerun_without_duplicates(tmp_path):
    server = LiveParley(tmp_path, free_port())
    server.migrate()
    big = tmp_path / "handbook.md"
    sections = [
        f"## Topic {i}\n\n" + f"Topic {i} explains step {i} of the procedure in detail. " * 25
        for i in range(200)  # half the 400 it had: the test took 110 s in a full run (--durations)
    ]
    big.write_text("# Support handbook\n\n" + "\n\n".join(sections))
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", str(big)],
        cwd=REPO,
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = sqlite3.connect(tmp_path / "parley.sqlite3", timeout=30)
    deadline = time.monotonic() + 120
    progress = 0
    while time.monotonic() < deadline and progress < 20:
        row = db.execute("select status, progress from retrieval_document").fetchone()
        progress = row[1] if row and row[0] == "processing" else 0
        time.sleep(0.05)
    assert progress >= 20, "ingestion never got under way"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert db.execute("select status from retrieval_document").fetchone()[0] == "processing"
    assert db.execute("select count(*) from retrieval_chunk").fetchone()[0] == 0

    server.manage("ingest", str(big))
    (status,) = db.execute("select status from retrieval_document").fetchone()
    chunks = db.execute("select count(*), count(distinct ordinal) from retrieval_chunk").fetchone()
    db.close()
    assert status == "ready" and chunks[0] == chunks[1] > 200
    report = server.manage("reindex", "--check").stdout
    assert '"ok": true' in report.replace("True", "true")

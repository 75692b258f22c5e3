"""The database is the source of truth: the index is checked against it and rebuilt from it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from retrieval.consistency import check_and_repair_all, check_index
from retrieval.index import VectorIndex, get_index
from retrieval.models import Chunk

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_check_finds_missing_and_extra_ids_and_repair_rebuilds_from_stored_embeddings(demo_kb, embedder):
    index = get_index("default", embedder.dim)
    assert check_index("default").ok
    victim = Chunk.objects.order_by("id").first()
    index.replace([victim.id], [999_999], np.ones((1, embedder.dim), np.float32) / np.sqrt(embedder.dim))
    Chunk.objects.filter(pk=victim.pk + 1).update(embedding=None)  # an old row without a vector
    report = check_index("default")
    assert report.missing_ids == [victim.id] and report.extra_ids == [999_999] and not report.ok

    with pytest.raises(CommandError):
        call_command("reindex", "--check", stdout=io.StringIO())
    check_and_repair_all()
    assert check_index("default").ok
    assert Chunk.objects.get(pk=victim.pk + 1).embedding is not None  # embedded again and stored
    out = io.StringIO()
    call_command("reindex", "--check", stdout=out)
    assert '"ok": true' in out.getvalue()


REBUILD = """
import sys, numpy as np, django
sys.path.insert(0, {repo!r})
django.setup()
from retrieval.index import VectorIndex
class Slow(VectorIndex):
    def _save(self, index):
        print("writing", flush=True)
        import time; time.sleep(30)  # killed here, after building, before the rename
        super()._save(index)
Slow({directory!r}, "c", 8).rebuild(np.arange(5000), np.random.rand(5000, 8).astype("float32"))
"""


def test_rebuild_killed_midway_leaves_previous_index_usable(tmp_path):
    from tests.conftest import REPO

    index = VectorIndex(tmp_path, "c", 8)
    vectors = np.eye(8, dtype=np.float32)  # (8, 8)
    index.rebuild(np.arange(100, 108), vectors)
    process = subprocess.Popen(
        [sys.executable, "-c", REBUILD.format(repo=str(REPO), directory=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert process.stdout.readline().strip() == "writing"
    ids, _ = index.search(vectors[3], 1)  # a reader keeps answering during the rebuild
    assert ids[0][0] == 103
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(0.1)
    reader = VectorIndex(tmp_path, "c", 8)  # a fresh process's view of the file
    assert len(reader) == 8 and reader.search(vectors[5], 1)[0][0][0] == 105

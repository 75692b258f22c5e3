"""`manage.py serve` as a user runs it: real sockets, the embedded Celery worker, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import LiveParley, free_port

pytestmark = pytest.mark.slow


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_home_page_loads_the_widget_with_one_script_tag(live_parley):
    with urllib.request.urlopen(live_parley.url + "/") as response:
        html = response.read().decode()
    assert html.count("parley/widget.js") == 1
    assert f'data-parley-host="{live_parley.url}"' in html
    with urllib.request.urlopen(live_parley.url + "/static/parley/widget.js") as response:
        assert "attachShadow" in response.read().decode()


def test_a_question_over_a_real_websocket_is_answered_with_a_source(live_parley):
    from assistant.chat.visitors import issue_token

    _, token = issue_token()  # whether or not the server accepts it, it must never be logged
    ws_url = live_parley.url.replace("http", "ws") + f"/ws/chat/?visitor={token}"
    with connect(ws_url, origin=live_parley.url, open_timeout=30) as socket:
        hello = json.loads(socket.recv(timeout=30))
        assert hello["type"] == "visitor" and hello["token"]
        socket.send(json.dumps({"type": "message", "text": "How long does a refund take?"}))
        frames = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(socket.recv(timeout=180)))
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "conversation" and "token" in kinds and kinds[-1] == "done", frames
    log = live_parley.read_log()
    assert "/ws/chat/?visitor=[redacted]" in log and token not in log and hello["token"] not in log
    citations = next(f for f in frames if f["type"] == "citations")["items"]
    assert any("efund" in item["title"] for item in citations)
    with urllib.request.urlopen(live_parley.url + citations[0]["url"]) as response:
        assert citations[0]["title"] in response.read().decode()


def test_the_embedded_worker_runs_queued_ingestion(live_parley, tmp_path):
    doc = tmp_path / "gift-cards.md"
    doc.write_text("# Gift cards\n\nBrightline gift cards are sold in £20 and £50 values.\n")
    live_parley.manage("ingest", "--background", str(doc))
    _wait_for_document(live_parley.data_dir / "parley.sqlite3", doc)


def _wait_for_document(database: Path, doc: Path) -> None:
    db = sqlite3.connect(database)
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline and status != "ready":
        row = db.execute(
            "select status from retrieval_document where source = ?", (str(doc.resolve()),)
        ).fetchone()
        status = row[0] if row else None
        time.sleep(0.5)
    db.close()
    assert status == "ready", (database.parent / "serve.log").read_text()[-3000:]


def test_work_queued_while_stopped_runs_after_start_and_sigterm_leaves_no_orphans(tmp_path):
    server = LiveParley(tmp_path, free_port(), "--no-warmup")
    server.migrate()
    # Queued with no worker running: the filesystem broker must keep it until serve starts.
    doc = tmp_path / "queued.md"
    doc.write_text("# Queued while stopped\n\nThis document was queued before the server started.\n")
    server.manage("ingest", "--background", str(doc))
    server.start()
    _wait_for_document(tmp_path / "parley.sqlite3", doc)
    pid = server.process.pid
    deadline = time.monotonic() + 60
    while not _children(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    children = _children(pid)
    assert children, "the Celery worker did not start"
    time.sleep(3)  # let the worker finish booting, as it would have in real use
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    server.log.close()
    for child in children:
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
    assert "Parley stopped." in (tmp_path / "serve.log").read_text()


# --- What a normal start prints ----------------------------------------------------------------

# Lines a normal start used to print that read like something is wrong (issue 22): Celery's
# warning about running as root, kombu's about the filesystem broker's missing host, Django's about
# streaming static files under ASGI, and the SMTP listener's own readiness probe as a lost client.
ALARMING = (
    "superuser privileges",
    "No hostname was supplied",
    "StreamingHttpResponse must consume",
    "connection lost",
)


def _wait_for_log(server: LiveParley, text: str) -> str:
    deadline = time.monotonic() + 120
    while text not in (log := server.read_log()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert text in log, log[-3000:]
    return log


def test_the_running_server_says_where_it_is(live_parley):
    log = live_parley.read_log()
    assert f"Parley is running at {live_parley.url}/" in log
    assert f"{live_parley.url}/console/" in log and f"{live_parley.url}/studio/" in log
    assert f"Create the first administrator at {live_parley.url}/setup/" in log or (
        f"Sign in at {live_parley.url}/accounts/login/" in log
    )


def test_import_curated_says_what_a_rerun_did():
    from assistant.management.commands.import_curated import report

    assert report(24, 24) == "curated examples: imported 24"
    assert report(0, 24) == "curated examples: all 24 already imported"
    assert report(2, 24) == "curated examples: imported 2 new, 22 already there"
    assert report(0, 0) == "curated examples: the file has none"

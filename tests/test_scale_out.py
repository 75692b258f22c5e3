"""The scale-out configuration the README promises: PostgreSQL, Redis channel layer and Redis
Celery broker, with `serve` answering a question end to end on them."""

from __future__ import annotations

import json
import os
import time

import pytest
from websockets.sync.client import connect

from tests.conftest import DEMO_DIR, PG, REDIS, LiveParley, free_port, missing_services, scratch_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services():
    missing = missing_services(("PostgreSQL", PG), ("Redis", REDIS))
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} not running; .ci/run should have started it")
        pytest.skip(f"{', '.join(missing)} not running on this machine")
    with scratch_database("parley_test") as name:
        yield {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
            "REDIS_URL": "redis://127.0.0.1:6379/14",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
            "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/15",
        }


def test_serve_on_postgres_and_redis_answers_and_runs_queued_work(services, tmp_path):
    server = LiveParley(tmp_path, free_port())
    server.env.update(services)
    server.manage("migrate", "--noinput")
    server.manage("ingest", str(DEMO_DIR / "refunds.md"))
    server.start()
    try:
        ws_url = server.url.replace("http", "ws") + "/ws/chat/"
        with connect(ws_url, origin=server.url, open_timeout=30) as sock:
            sock.send(json.dumps({"type": "message", "text": "How long does a refund take?"}))
            frames = []
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(json.loads(sock.recv(timeout=180)))
        assert frames[-1]["type"] == "done", frames
        assert "efund" in next(f for f in frames if f["type"] == "citations")["items"][0]["title"]

        server.manage("ingest", "--background", str(DEMO_DIR / "moving-house.md"))
        import psycopg

        deadline, status = time.monotonic() + 120, None
        with psycopg.connect(services["DATABASE_URL"].replace("postgres://", "postgresql://")) as conn:
            while time.monotonic() < deadline and status != "ready":
                row = conn.execute(
                    "select status from retrieval_document where source like %s", ("%moving-house.md",)
                ).fetchone()
                conn.commit()
                status = row[0] if row else None
                time.sleep(0.5)
        assert status == "ready", (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        assert server.stop() == 0


# Two agents approving the same draft at the same moment, from two processes on PostgreSQL: the
# ticket row is locked (select_for_update) and the transition checked, so exactly one approval
# creates the reply to send and the other is told it lost.
_SETUP = """
from assistant.models import Draft, MailMessage, Ticket
from django.contrib.auth.models import Group, User
ticket = Ticket.objects.create(subject="race", customer_email="ana@example.com", status="needs_review")
message = MailMessage.objects.create(ticket=ticket, direction="in", message_id="<race@example.com>",
                                     from_email="ana@example.com", subject="race", text="Help")
Draft.objects.create(ticket=ticket, version=1, body="Hello Ana", replying_to=message)
for name in ("ann", "bob"):
    User.objects.create_user(name, is_staff=True).groups.add(Group.objects.get_or_create(name="agent")[0])
print(ticket.pk)
"""
_APPROVE = """
import os, time
from django.contrib.auth.models import User
from assistant.desk import review
from assistant.models import Ticket
ticket, user = Ticket.objects.get(pk={ticket}), User.objects.get(username="{user}")
print("ready", flush=True)
while not os.path.exists("{go}"):
    time.sleep(0.005)
try:
    print("approved", review.approve(ticket, user).pk)
except review.ReviewError as exc:
    print(exc.code)
"""


def test_two_agents_approving_at_once_create_one_reply(services, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    server = LiveParley(tmp_path, free_port())
    server.env.update(services)
    server.env["CELERY_TASK_ALWAYS_EAGER"] = "0"
    server.manage("migrate", "--noinput")
    ticket = int(server.manage("shell", "-c", _SETUP).stdout.split()[-1])
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "shell",
                "--no-imports",
                "-c",
                _APPROVE.format(ticket=ticket, user=user, go=go),
            ],
            cwd=REPO,
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user in ("ann", "bob")
    ]
    for racer in racers:  # both have started Django and read the ticket: go at once
        while (line := racer.stdout.readline()) and line.strip() != "ready":
            pass
        assert line, "a racer exited before it was ready"
    go.touch()
    outcomes = sorted(racer.communicate(timeout=120)[0].strip().splitlines()[-1] for racer in racers)
    assert outcomes[0].startswith("approved") and outcomes[1] == "conflict", outcomes
    count = server.manage(
        "shell",
        "-c",
        f"from assistant.models import OutboundMail as O; print(O.objects.filter(ticket={ticket}).count())",
    )
    assert count.stdout.split()[-1] == "1"

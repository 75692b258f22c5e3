"""Shared fixtures. Real models, loaded once per test session; a throwaway index directory."""

from __future__ import annotations

import contextlib
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / "demo"


@pytest.fixture(scope="session", autouse=True)
def isolated_index(tmp_path_factory):
    """Keep the tests' FAISS files out of the developer's var/index."""
    from retrieval import index as retrieval_index

    index_dir = tmp_path_factory.mktemp("index")
    with override_settings(INDEX_DIR=index_dir, CHAT_MAX_ANSWER_TOKENS=24, DESK_MAX_DRAFT_TOKENS=24):
        retrieval_index._indexes.clear()
        yield index_dir
        retrieval_index._indexes.clear()


@pytest.fixture(scope="session", autouse=True)
def celery_in_memory():
    """Tasks queued by the code under test (a mail's triage, a reply's sending) go to an
    in-memory broker nobody consumes, not to the developer's var/celery queue: tests call the
    task bodies themselves; serve's real worker is tested in test_serve.py."""
    from config.celery import app

    before = app.conf.broker_url
    app.conf.broker_url = "memory://"
    yield
    app.conf.broker_url = before


@pytest.fixture(scope="session", autouse=True)
def redaction_analyzer():
    """Presidio with spaCy, built once before the first test (~6 s) rather than inside the first
    chat or draft, where it would eat into a websocket test's timeout."""
    from core.redaction import get_analyzer

    return get_analyzer()


@pytest.fixture(scope="session")
def embedder():
    from inference.services import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def text_generator():
    from inference.services import get_text_generator

    return get_text_generator()


@pytest.fixture
def demo_kb(db, embedder, isolated_index):
    """The demo knowledge base ingested into a fresh index (the DB rolls back after each test;
    the index directory is emptied so vector ids never point at rows of an earlier test)."""
    from retrieval import index as retrieval_index
    from retrieval.actions.ingest import do_ingest_path

    _reset_index(isolated_index, retrieval_index)
    results = do_ingest_path(DEMO_DIR)
    yield results
    _reset_index(isolated_index, retrieval_index)


def _reset_index(index_dir: Path, search_module) -> None:
    search_module._indexes.clear()
    for path in index_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def reachable(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
        return True
    except OSError:
        return False


def missing_services(*wanted: tuple[str, tuple[str, int]]) -> list[str]:
    """The names of the (name, address) servers that do not answer."""
    return [name for name, address in wanted if not reachable(address)]


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new database on the local PostgreSQL server, dropped (connections and all) afterwards;
    yields its name."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chat_model_dir() -> Path:
    return Path(settings.CHAT_MODEL)


class ManagedServer:
    """A `manage.py` server command in its own process group, on its own data directory, as a
    user runs it. Subclasses name the command, its log and extra environment."""

    command = "serve"
    log_name = "serve.log"
    startup_seconds = 120
    extra_env: dict[str, str] = {}

    def __init__(self, data_dir: Path, port: int, *extra: str) -> None:
        import os

        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "PARLEY_DATA_DIR": str(data_dir),
            "PARLEY_MODELS_DIR": str(settings.MODELS_DIR),
            "DEBUG": "1",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.extra = extra
        self.process = None

    def manage(self, *args: str, timeout: float = 300):
        import subprocess
        import sys

        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def read_log(self) -> str:
        return (self.data_dir / self.log_name).read_text()

    _migrated: Path | None = None  # the first server's freshly migrated SQLite file, for the rest

    def migrate(self) -> None:
        """`manage.py migrate` into this server's SQLite file. The first call in a session runs it;
        later ones copy that file (a fresh migrate took 18 s on the shared machine: `time manage.py
        migrate` on an empty PARLEY_DATA_DIR). A test about migrating itself calls manage()."""
        import sqlite3
        from contextlib import closing

        target = self.data_dir / "parley.sqlite3"
        if ManagedServer._migrated is None:
            self.manage("migrate", "--noinput")
            ManagedServer._migrated = self.data_dir / "migrated-template.sqlite3"
            source, copy = target, ManagedServer._migrated
        else:
            source, copy = ManagedServer._migrated, target
        # SQLite's backup API rather than a file copy: it is consistent whatever the journal mode.
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)

    def start(self):
        import subprocess
        import sys
        import time
        import urllib.request

        self.log = open(self.data_dir / self.log_name, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", self.command, "--port", str(self.port), *self.extra],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command} exited early:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(
            f"{self.command} did not answer /health within {self.startup_seconds} s:\n{self.read_log()}"
        )

    def stop(self) -> int:
        import signal
        import subprocess

        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                import os

                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        return self.process.returncode


class LiveParley(ManagedServer):
    """`manage.py serve`: the whole product."""

    extra_env = {
        "CHAT_MAX_ANSWER_TOKENS": "32",
        # Short article parts from one passage each (tests/test_studio_browser.py writes a whole
        # article and regenerates a part through the worker: 48.5 s in a full run, --durations).
        "CONTENT_SECTION_TOKENS": "24",
        "CONTENT_OUTLINE_TOKENS": "24",
        "CONTENT_RETRIEVAL_K": "1",
        # Actions may call the tests' local stand-ins for company systems (on loopback, over http).
        "ACTIONS_ALLOWED_HOSTS": "127.0.0.1",
        "ACTIONS_PRIVATE_HOSTS": "127.0.0.1",
        "ACTIONS_HTTP_HOSTS": "127.0.0.1",
    }


@pytest.fixture(scope="session")
def live_parley(tmp_path_factory):
    """The product as `make run` starts it: migrated, demo knowledge base ingested, serving."""
    server = LiveParley(tmp_path_factory.mktemp("live"), free_port())
    server.migrate()
    server.manage("ingest", str(DEMO_DIR))
    server.start()
    yield server
    server.stop()


# --- Personas (healthchecks-style): who should and should not get in ------------------------------


def _user(username: str, *roles: str, staff: bool = True):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, password="correct horse battery staple", is_staff=staff)
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def knowledge_manager(db):
    return _user("kim", "knowledge")


@pytest.fixture
def agent(db):
    return _user("alex", "agent")


@pytest.fixture
def agent_online(db):
    """Someone from the team has the live console open for the whole test (a presence row that
    does not expire within it), so a visitor asking for a person is queued for them. Without one,
    visitors are offered email instead (tests/test_no_one_online.py)."""
    from datetime import timedelta

    from django.utils import timezone

    from assistant.models import AgentPresence

    user = _user("casey", "agent")
    AgentPresence.objects.create(
        channel="tests.casey", user=user, seen_at=timezone.now() + timedelta(hours=1)
    )
    return user


@pytest.fixture
def outsider(db):
    """Staff, but with no role: should see nothing."""
    return _user("olive")


@pytest.fixture
def editor(db):
    return _user("edna", "editor")


@pytest.fixture
def administrator(db):
    """Governance: settings, erasure, model versions; not the desk or the studio."""
    return _user("ada", "admin")


@pytest.fixture
def auditor(db):
    """Reads the audit log and model records; writes nothing."""
    return _user("aud", "auditor")


def bearer(user) -> dict[str, str]:
    from core.models import ApiToken

    _, raw = ApiToken.issue(user, name="tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


# --- Browsers: Debian's Chromium driven by Playwright, and pages on a second origin -----------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")  # not session: Playwright's sync API keeps an event loop running
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class StaticSite:
    """A folder served over HTTP on its own port: another origin, like a company's website."""

    def __init__(self, root: Path) -> None:
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - the base class's signature
                pass

        self.root = root
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- Mail ---------------------------------------------------------------------------------------

DESK_ADDRESS = "support@brightline.example"


def customer_mail(
    sender="ana@example.com", subject="My router keeps rebooting", body="Hello, it reboots.", **headers
):
    """A customer's mail to the desk, as a client writes it (CRLF line ends, as mail travels);
    extra headers by keyword: In_Reply_To=... becomes In-Reply-To."""
    from email import policy
    from email.message import EmailMessage
    from email.utils import make_msgid

    message = EmailMessage(policy=policy.SMTP)
    message["From"] = f"Ana Example <{sender}>"
    message["To"] = DESK_ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = headers.pop("message_id", make_msgid(domain="example.com"))
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def sign_in(page, base_url: str, username: str, next_path: str) -> None:
    """Sign in through Parley's sign-in page (as staff do) and land on `next_path`."""
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_path}")

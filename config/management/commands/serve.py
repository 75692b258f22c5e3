"""`python manage.py serve`: the whole product in one process group.

Starts the ASGI server (uvicorn: HTTP and websockets) on 127.0.0.1:$PORT (default 8000; --port
wins) in this process and the embedded Celery worker as a child. The models are warmed in a
thread meanwhile; /health/ready answers 503 until that is over. Ctrl-C or SIGTERM stops both
cleanly; the worker is also told to exit by the kernel if this process dies abruptly
(PR_SET_PDEATHSIG), so no orphan is ever left behind.

Once the server listens it prints where everything is (`running_block`): the site, the console,
the studio, the SMTP listener, and how to get in (the first-run page while nobody has an account).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import uvicorn
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from assistant.desk.smtp import start_listener
from config import logfilters
from config.env import envint
from core.redaction import get_analyzer
from inference.services import get_embedder, get_text_generator
from inference.warmth import warmth
from retrieval.actions.create import do_requeue_unfinished
from retrieval.consistency import check_and_repair_all

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def running_block(url: str, smtp: str | None, first_run: bool) -> str:
    """What `serve` prints once it listens: `url` is the site's root, ending in "/"."""
    lines = [
        f"Parley is running at {url}",
        f"  Website with the chat widget: {url}",
        f"  Live chats and email desk:    {url}console/",
        f"  Content studio:               {url}studio/",
    ]
    if smtp:
        lines.append(f"  Inbound email (SMTP):         {smtp} (mail sent here becomes a desk ticket)")
    if first_run:
        lines.append(f"Create the first administrator at {url}setup/")
    else:
        lines.append(f"Sign in at {url}accounts/login/")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def _browsable(host: str) -> str:
    """The address to open for `host`: a wildcard bind is reached on loopback."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - naming the wildcard, not binding it
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class _Server(uvicorn.Server):
    """uvicorn's server, calling `on_listening` once its socket is open."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.on_listening()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class Command(BaseCommand):
    help = "Serve HTTP and websockets and run the embedded Celery worker."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=None, help="Default: $PORT, else 8000.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the Celery worker.")
        parser.add_argument(
            "--no-warmup", action="store_true", help="Load models on first use instead of at start."
        )

    def handle(self, *args, host: str, port: int | None, no_worker: bool, no_warmup: bool, **options) -> None:
        if port is None:
            port = envint("PORT", 8000, minimum=1)  # read here, not at import: a bad PORT stops only serve
        self._recover()
        worker = None if no_worker else self._start_worker()
        smtp = None
        if settings.SMTP_INBOUND_PORT:
            smtp = start_listener()
        if not no_warmup:
            warmth.start()  # before the server listens: no instant where it looks ready but is cold
            threading.Thread(target=self._warm_up, name="parley-warmup", daemon=True).start()

        # uvicorn handles SIGINT/SIGTERM by shutting down gracefully and then re-raising the
        # signal; turn that re-raised SIGTERM into SystemExit so the cleanup below still runs.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        block = running_block(
            f"http://{_browsable(host)}:{port}/",
            f"{smtp.hostname}:{smtp.port}" if smtp is not None else None,
            first_run=not get_user_model().objects.exists(),
        )

        def listening() -> None:
            self.stdout.write(block)
            self.stdout.flush()

        server = _Server(
            uvicorn.Config(
                "config.asgi:application",
                host=host,
                port=port,
                lifespan="off",
                log_level="info",
                ws_max_size=max(settings.CHAT_MAX_FRAME_BYTES * 4, 65536),
                timeout_graceful_shutdown=10,
            ),
            listening,
        )
        logfilters.install("uvicorn.error", "uvicorn.access")  # after uvicorn configured its logging
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            if smtp is not None:
                smtp.stop()
            if worker is not None:
                self._stop_worker(worker)
            self.stdout.write("Parley stopped.")

    def _recover(self) -> None:
        """Finish what a crash or kill interrupted: an index out of step with the database is
        rebuilt from it, and documents left pending or processing are queued again (processing
        replaces a document's chunks whole, so a rerun never duplicates them)."""
        check_and_repair_all()  # the index must match the database before the first search
        requeued = do_requeue_unfinished()
        if requeued:
            log.info("event=documents_requeued count=%d", requeued)

    def _start_worker(self) -> subprocess.Popen:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "--quiet",  # no banner: serve prints what runs where (running_block)
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname=parley-embedded@%h",
            # Beat inside the worker: scheduled jobs (the retention purge) without another process.
            "--beat",
            f"--schedule={settings.CELERY_DATA_DIR / 'beat-schedule'}",
        ]
        # The worker's embedding shares the cores with the web process's model thread: with two
        # OpenMP pools of 2 threads on 2 cores, both collapse (threads spin at barriers waiting
        # for a descheduled sibling; benchmarks/RESULTS.md). torch and OpenVINO read this.
        threads = str(settings.EMBEDDED_WORKER_THREADS)
        env = {
            **os.environ,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "PYTHONWARNINGS": logfilters.embedded_worker_warnings(os.environ.get("PYTHONWARNINGS")),
        }
        log.info("event=worker_starting threads=%s", threads)
        return subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)  # noqa: S603,PLW1509

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish the current task
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    def _warm_up(self) -> None:
        for model, load in (
            ("embedding", get_embedder),
            ("chat", get_text_generator),
            ("redaction", get_analyzer),  # personal-data redaction: spaCy and Presidio take ~6 s to build
        ):
            try:
                load()
            except Exception:
                log.exception("event=warmup_failed model=%s", model)
                warmth.mark(model, "failed")
            else:
                warmth.mark(model, "warm")
        warmth.finish()
        log.info("event=warmup_finished")

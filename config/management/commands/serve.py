"""`python manage.py serve`: the whole product in one process group.

Starts the ASGI server (uvicorn: HTTP and websockets) on 127.0.0.1:$PORT (default 8000; --port
wins) in this process and the embedded Celery worker as a child. The models are warmed in a
thread meanwhile; /health/ready answers 503 until that is over. Ctrl-C or SIGTERM stops both
cleanly; the worker is also told to exit by the kernel if this process dies abruptly
(PR_SET_PDEATHSIG), so no orphan is ever left behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading

import uvicorn
from django.conf import settings
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
        server = uvicorn.Server(
            uvicorn.Config(
                "config.asgi:application",
                host=host,
                port=port,
                lifespan="off",
                log_level="info",
                ws_max_size=max(settings.CHAT_MAX_FRAME_BYTES * 4, 65536),
                timeout_graceful_shutdown=10,
            )
        )
        logfilters.install("uvicorn.error", "uvicorn.access")  # after uvicorn configured its logging
        self.stdout.write(f"Parley serving on http://{host}:{port}/ (Ctrl-C to stop)")
        self.stdout.flush()
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
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
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

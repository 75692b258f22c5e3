"""`python manage.py inference_server`: the models behind an OpenAI-compatible HTTP API.

Loads every configured model before it listens, so the first request is not the slow one, then
serves inference/server/ with uvicorn until Ctrl-C or SIGTERM (in-flight requests get up to
10 seconds to finish).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.server import create_app, load_models

log = logging.getLogger(__name__)


class ReadyServer(uvicorn.Server):
    """Logs one line once the socket is bound: the moment clients can connect."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            config = self.config
            log.info("event=inference_server_ready url=http://%s:%d", config.host, config.port)


class Command(BaseCommand):
    help = "Serve the chat, embedding and image models over an OpenAI-compatible HTTP API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        loaded = load_models()
        if all(version.startswith("unavailable") for version in loaded.values()):
            raise CommandError("No model could be loaded; see the log above.")
        if not settings.INFERENCE_SERVER_API_KEY and host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("event=inference_server_open host=%s reason=no_INFERENCE_SERVER_API_KEY", host)

        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit 0 instead of dying.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server = ReadyServer(
            uvicorn.Config(
                create_app(),
                host=host,
                port=port,
                lifespan="off",
                log_level="info",
                access_log=False,  # the app logs one structured line per request instead
                timeout_graceful_shutdown=10,
            )
        )
        try:
            server.run()
        except KeyboardInterrupt:
            pass

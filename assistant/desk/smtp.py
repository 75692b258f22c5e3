"""The inbound SMTP listener (aiosmtpd), started by `manage.py serve` when SMTP_INBOUND_PORT is
set. It accepts a message only after storing it (store_raw), so a 250 reply means it is safe;
anything that goes wrong before that is a 451 and the sending server tries again later. It only
stores: the listener runs in the web process, and parsing untrusted mail there could stall
every page (the worker parses, in a child process with a time limit)."""

from __future__ import annotations

import logging
import socket
import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from assistant.desk.inbound import store_raw

log = logging.getLogger(__name__)


class DeskHandler:
    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        try:
            inbound = await sync_to_async(store_raw, thread_sensitive=False)(
                envelope.original_content or envelope.content,
                source="smtp",
                envelope_from=envelope.mail_from or "",
            )
        except Exception:
            log.exception("event=smtp_store_failed")
            return "451 4.3.0 Could not store the message; please try again later"
        log.info("event=mail_received source=smtp inbound=%s status=%s", inbound.pk, inbound.status)
        return "250 2.0.0 Message accepted"


class _ProbeFilter(logging.Filter):
    """aiosmtpd checks that its server is up by connecting to it once and hanging up, and its
    session log ("mail.log") reports that like any client: "Peer: ...", "connection lost". Those
    records are dropped, by the probe's own address; every other connection is still logged."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._probes: dict[tuple, float] = {}  # the probe's address -> when to forget it

    def add(self, address: tuple) -> None:
        with self._lock:
            now = time.monotonic()
            self._probes = {a: t for a, t in self._probes.items() if t > now}
            self._probes[address] = now + 60  # its records come within moments

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        with self._lock:
            return not any(isinstance(a, tuple) and a in self._probes for a in args)


_probe_filter = _ProbeFilter()


def _controller_class():
    from aiosmtpd.controller import Controller

    class Listener(Controller):
        def _trigger_server(self) -> None:
            # aiosmtpd's probe, with the client's address known before it connects: bound first,
            # so the server can never log the connection before the filter knows it.
            host = self.hostname or self._localhost
            family, kind, proto, _, address = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind, proto) as probe:
                probe.settimeout(1.0)
                probe.bind((address[0], 0))
                _probe_filter.add(probe.getsockname())
                probe.connect(address)
                probe.recv(1024)

    return Listener


def start_listener(port: int | None = None, host: str | None = None):
    """Start the listener in its own thread; returns the aiosmtpd Controller (call .stop())."""
    logging.getLogger("mail.log").addFilter(_probe_filter)  # once: addFilter ignores a repeat
    controller = _controller_class()(
        DeskHandler(),
        hostname=host or settings.SMTP_INBOUND_HOST,
        port=port or settings.SMTP_INBOUND_PORT,
        data_size_limit=settings.MAIL_MAX_MESSAGE_BYTES,
        decode_data=False,
    )
    controller.start()
    log.info("event=smtp_inbound_listening host=%s port=%s", controller.hostname, controller.port)
    return controller

"""The inbound SMTP listener (aiosmtpd), started by `manage.py serve` when SMTP_INBOUND_PORT is
set. It accepts a message only after storing it (store_raw), so a 250 reply means it is safe;
anything that goes wrong before that is a 451 and the sending server tries again later. It only
stores: the listener runs in the web process, and parsing untrusted mail there could stall
every page (the worker parses, in a child process with a time limit)."""

from __future__ import annotations

import logging

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


def start_listener(port: int | None = None, host: str | None = None):
    """Start the listener in its own thread; returns the aiosmtpd Controller (call .stop())."""
    from aiosmtpd.controller import Controller

    controller = Controller(
        DeskHandler(),
        hostname=host or settings.SMTP_INBOUND_HOST,
        port=port or settings.SMTP_INBOUND_PORT,
        data_size_limit=settings.MAIL_MAX_MESSAGE_BYTES,
        decode_data=False,
    )
    controller.start()
    log.info("event=smtp_inbound_listening host=%s port=%s", controller.hostname, controller.port)
    return controller

"""Logging filters. Access logs name request paths, and a chat websocket's path carries the
visitor's signed token (?visitor=...): a bearer credential and personal data, so never logged."""

from __future__ import annotations

import logging
import re

_SECRET_PARAM = re.compile(r"\b(visitor|token|api_key)=[^&\s\"']+")


def redact(text: str) -> str:
    return _SECRET_PARAM.sub(r"\1=[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install(*logger_names: str) -> None:
    for name in logger_names:
        logging.getLogger(name).addFilter(RedactSecrets())

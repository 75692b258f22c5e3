"""Logging filters: no secrets and no personal data in logs.

- Access logs name request paths, and a chat websocket's path carries the visitor's signed token
  (?visitor=...): a bearer credential and personal data, so never logged (`RedactSecrets`).
- Any record may quote a customer (an error about a mail, an address in an exception): with the
  admin's "redact logs" on, email addresses, phone numbers and IBANs are replaced by
  [EMAIL_ADDRESS], [PHONE_NUMBER], [IBAN_CODE] (`RedactPersonalData`, on the root handler in
  settings.LOGGING). Regular expressions only: spaCy (core/redaction.py) costs milliseconds per
  call, too slow for every log line, so names are not caught here.
"""

from __future__ import annotations

import logging
import re
import threading
import time

_SECRET_PARAM = re.compile(r"\b(visitor|token|api_key)=[^&\s\"']+")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Country code or trunk prefix, then 7 to 14 more digits with the usual separators. Not a number
# in a log's key=value (latency_ms=1234567 starts with no 0 or +), a decimal or a version.
_PHONE = re.compile(r"(?<![\w.+/-])(?:\+\d{1,3}|00\d{1,3}|0(?=\d))(?:[ ./-]?\(?\d\)?){7,14}(?![\w.]?\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")


def redact(text: str) -> str:
    return _SECRET_PARAM.sub(r"\1=[redacted]", text)


def _valid_iban(candidate: str) -> bool:
    """ISO 13616 checksum (mod 97), so an order id that looks like an IBAN stays readable."""
    compact = candidate.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban(match: re.Match[str]) -> str:
    # The pattern may run on into a following capitalised word ("... 0130 00 AND"): the longest
    # prefix, cut at a space, that passes the checksum is the IBAN.
    candidate = match.group()
    for end in [len(candidate), *(i for i in range(len(candidate) - 1, 14, -1) if candidate[i] == " ")]:
        if _valid_iban(candidate[:end]):
            return "[IBAN_CODE]" + candidate[end:]
    return candidate


def redact_patterns(text: str) -> str:
    """Email addresses, phone numbers and valid IBANs replaced by their entity name (~µs)."""
    text = _EMAIL.sub("[EMAIL_ADDRESS]", text)
    text = _IBAN.sub(_iban, text)
    return _PHONE.sub("[PHONE_NUMBER]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


class _LogSetting:
    """GovernanceSettings.redact_logs, read at most every `ttl` seconds: a database query per log
    line would cost more than the line. On while it cannot be read (no database yet, an async
    context, a query's own log record while reading it)."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self.value = True
        self.read_at = float("-inf")
        self.reading = threading.local()

    def forget(self) -> None:
        """Read the setting again on the next record (after an admin changed it; tests)."""
        self.read_at = float("-inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.read_at < self.ttl or getattr(self.reading, "active", False):
            return self.value
        self.reading.active = True
        try:
            # Load order: Django configures logging before apps are loaded; core.redaction reads
            # a model, so it is imported on the first record, not when logging is set up.
            from core.redaction import redaction_enabled

            self.value = redaction_enabled("logs")
        except Exception:  # noqa: BLE001 - logging must never fail; redacting is the safe default
            self.value = True
        finally:
            self.reading.active = False
            self.read_at = now
        return self.value


redact_logs_enabled = _LogSetting()


class RedactPersonalData(logging.Filter):
    """Secrets always; email addresses, phone numbers and IBANs while `redact_logs` is on. The
    message and each argument are redacted where they are, so formatters that read the arguments
    (uvicorn's access log) still work; an argument that is neither text nor a number is replaced
    by its redacted text only when that text held something to redact. The traceback is rendered
    here and redacted too."""

    def filter(self, record: logging.LogRecord) -> bool:
        personal = redact_logs_enabled()

        def clean(value):
            if isinstance(value, int | float | bool) or value is None:
                return value
            text = value if isinstance(value, str) else str(value)
            cleaned = redact(text)
            cleaned = redact_patterns(cleaned) if personal else cleaned
            return cleaned if isinstance(value, str) or cleaned != text else value

        if isinstance(record.msg, str):
            record.msg = clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: clean(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = clean(record.exc_text)
        return True


def install(*logger_names: str) -> None:
    """For loggers with handlers of their own (uvicorn's), which the root handler's filter does
    not see: an access log line names the path, and /api/people/{email} holds an address."""
    for name in logger_names:
        logging.getLogger(name).addFilter(RedactPersonalData())


# --- Start-up noise with no cause we can remove (`manage.py serve`) ----------------------------
# Celery warns on every start when its worker runs as root, which is the default user in
# containers and CI. The embedded worker accepts JSON only (Celery refuses to start as root when
# pickle is accepted, and that check stays), so the warning says nothing to act on there. Passed
# to the embedded worker only (PYTHONWARNINGS, serve.py): a worker an operator starts by hand as
# root still warns. The text is the start of celery.platforms.ROOT_DISCOURAGED.
EMBEDDED_WORKER_IGNORED_WARNINGS = ("ignore:You're running the worker with superuser privileges",)


def embedded_worker_warnings(current: str | None) -> str:
    """The PYTHONWARNINGS value for the embedded worker: `current` plus the ignores above."""
    return ",".join([*EMBEDDED_WORKER_IGNORED_WARNINGS, *([current] if current else [])])

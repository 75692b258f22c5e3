"""Named errors of the knowledge base, each with a stable code and a message for people."""

from __future__ import annotations

from core.errors import DomainError

# The HTTP status of the codes that are not a plain bad request (400).
_STATUS = {"too_large": 413}


class IngestError(DomainError):
    """A document that could not be created or ingested. Its status follows from its code, so
    the API answers it as raised (a file over the size limit is 413, anything else 400)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        code = code or "ingest_failed"
        super().__init__(code, message, _STATUS.get(code))

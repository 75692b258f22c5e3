"""Named errors of the knowledge base, each with a stable code and a message for people."""

from __future__ import annotations


class IngestError(Exception):
    code = "ingest_failed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.message = message
        if code:
            self.code = code
        super().__init__(message)

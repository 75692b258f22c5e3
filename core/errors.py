"""The one domain error. Every layer's errors derive from `DomainError(code, message, status)`;
the JSON API turns one into `{"error": {"code", "message"}}` with its status (config/api.py) and
both websockets into `{"type": "error", "code", "message"}` frames (assistant/chat/frames.py),
each in one place. `extra` carries what a client may act on (for example `retry_after`)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A stable code for programs, a message for people and the HTTP status it maps to."""

    default_status = 400

    def __init__(self, code: str, message: str, status: int | None = None, **extra: Any) -> None:
        self.code = code
        self.message = message
        self.status = self.default_status if status is None else status
        self.extra = {key: value for key, value in extra.items() if value is not None}
        super().__init__(f"{code}: {message}")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}

    def frame(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message, **self.extra}

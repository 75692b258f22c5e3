"""Errors the chat protocol reports to clients as `{"type": "error", "code", "message"}`
(assistant/chat/frames.py), with `retry_after` (seconds, a DomainError extra) when waiting will
help: `ChatError("rate_limited", "...", retry_after=30)`."""

from __future__ import annotations

from core.errors import DomainError


class ChatError(DomainError):
    @property
    def retry_after(self) -> int | None:
        return self.extra.get("retry_after")

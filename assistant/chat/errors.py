"""Errors the chat protocol reports to clients as `{"type": "error", "code", "message"}`, with
`retry_after` (seconds) when waiting will help."""

from __future__ import annotations


class ChatError(Exception):
    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        self.code = code
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{code}: {message}")

    def frame(self) -> dict:
        frame = {"type": "error", "code": self.code, "message": self.message}
        if self.retry_after is not None:
            frame["retry_after"] = self.retry_after
        return frame

"""Errors the chat protocol reports to clients as `{"type": "error", "code", "message"}`."""

from __future__ import annotations


class ChatError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

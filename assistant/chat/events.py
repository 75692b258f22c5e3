"""What the one answer path yields to the chat consumer, one event per client frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AnswerEvent:
    kind: str  # "conversation" | "token" | "citations" | "offline" | "done"
    data: dict[str, Any]

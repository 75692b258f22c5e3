"""How warm this process's models are, for `/health` and `/health/ready`.

`manage.py serve` loads the models in a thread at start (a cold first answer waits ~10 s) and
reports here: each model is "loading", then "warm" or "failed". Without a warm-up (runserver,
tests, `serve --no-warmup`) they stay "cold" and load on first use, and the process is ready at
once: there is nothing to wait for. Plain state with a lock: it imports no model library."""

from __future__ import annotations

import threading


class ModelWarmth:
    MODELS = ("chat", "embedding", "redaction")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states = dict.fromkeys(self.MODELS, "cold")
        self._warming = False

    def start(self) -> None:
        with self._lock:
            self._states = dict.fromkeys(self.MODELS, "loading")
            self._warming = True

    def mark(self, model: str, state: str) -> None:
        with self._lock:
            self._states[model] = state

    def finish(self) -> None:
        """The warm-up is over, whatever became of each model (a failed one is retried on first
        use and answers fall back meanwhile; keeping the process out of rotation would not help)."""
        with self._lock:
            self._warming = False

    def snapshot(self) -> tuple[dict[str, str], bool]:
        """Each model's state, and whether the process is ready (no warm-up under way)."""
        with self._lock:
            return dict(self._states), not self._warming


warmth = ModelWarmth()

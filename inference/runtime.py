"""One thread for all model work in a process (torch, and FAISS, which shares its OpenMP).

PyTorch on CPU keeps an OpenMP worker pool per calling thread, and idle pools spin for a while
before sleeping. When generation and embedding run on different threads, the pools fight over the
cores: measured on the 2-core dev machine, SmolLM2 decode fell from 30 to 16 tokens/s after another
thread had used torch (OMP_WAIT_POLICY=PASSIVE stops the fight but costs as much). Running every
model call on this single thread keeps one pool, hot. Generation submits one decode step at a time,
so embedding requests and other streams interleave with it at token boundaries.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]  # future, fn, args, kwargs


class ModelThread:
    def __init__(self, name: str = "parley-model") -> None:
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            future, fn, args, kwargs = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered to whoever waits on the future
                future.set_exception(exc)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn on the model thread and wait for it (directly, if already on it)."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()


_model_thread: ModelThread | None = None
_lock = threading.Lock()


def model_thread() -> ModelThread:
    global _model_thread
    with _lock:
        if _model_thread is None:
            _model_thread = ModelThread()
        return _model_thread

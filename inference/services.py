"""Process-wide access to the configured model backends.

Each backend is built once per process on first use (loading a model costs seconds and hundreds
of MB) and shared by every request, task and consumer in that process.

The chat model follows the registry: a backend that loads weights from a folder (its class takes
`model_dir`) is built from the *active* chat ModelVersion's folder and reports that version's key
in its usage records. When another version becomes active, in this process or another one (the
`models` command), the next call builds the new backend; the old one is only dropped, so answers
streaming from it finish on it. Settings decide, as before, with no active version on record (a
fresh database, a test without one), with a remote backend (the server follows its own registry),
and when CHAT_MODEL names a folder outside MODELS_DIR: prepare_models leaves such a model
unregistered too, and an older registry entry must not override what the operator configured.

The embedder and the image generator stay on settings: vectors in the index were made by one
embedding model and a query vector from another means nothing to them, so switching embedders is
a reindex, not an activation; LocalImageGenerator's `model` is shared with the remote backend,
where it is a name rather than a folder.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import connections
from django.utils.module_loading import import_string

from inference.base import Embedder, ImageGenerator, TextGenerator
from inference.models import ModelVersion

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a backend instance was built from: its dotted path, then the active version's folder,
# adapter and key when it follows the registry.
Spec = tuple[str, ...]

# How long a process trusts its last look at the registry. Each look is one indexed query; a
# version activated elsewhere (the CLI, another server process) takes effect within this time.
ACTIVE_CHECK_SECONDS = 3.0

_lock = threading.Lock()
# (slot, backend dotted path) -> (spec it was built from, instance). Keyed by backend too, so a
# test that switches backends with override_settings and back finds its instance again.
_instances: dict[tuple[str, str], tuple[Spec, Any]] = {}

_active_lock = threading.Lock()
_active_cache: dict[str, tuple[float, ActiveVersion | None]] = {}


@dataclass(frozen=True)
class ActiveVersion:
    key: str
    path: str
    adapter: str = ""  # a fine-tuned version's LoRA adapter folder, merged in at load


def forget_active() -> None:
    """Drop the cached registry look-ups, so the next call reads the registry (called when an
    activation commits in this process)."""
    with _active_lock:
        _active_cache.clear()


def active_version(kind: str) -> ActiveVersion | None:
    """The active version of `kind` as last read from the registry, at most ACTIVE_CHECK_SECONDS
    old. Safe to call from an event loop thread. Raises DatabaseError (or the test runner's
    RuntimeError) when the registry cannot be read."""
    now = time.monotonic()
    with _active_lock:
        cached = _active_cache.get(kind)
        if cached is not None and now - cached[0] < ACTIVE_CHECK_SECONDS:
            return cached[1]
    found = _off_the_event_loop(lambda: _read_active(kind))
    with _active_lock:
        _active_cache[kind] = (time.monotonic(), found)
    return found


def _read_active(kind: str) -> ActiveVersion | None:
    row = (
        ModelVersion.objects.filter(kind=kind, status=ModelVersion.Status.ACTIVE)
        .values_list("key", "path", "adapter")
        .first()
    )
    return ActiveVersion(key=row[0], path=row[1], adapter=row[2]) if row else None


def _off_the_event_loop(fn: Callable[[], T]) -> T:
    """Run a short ORM query here, or, on a thread running an event loop (where Django raises
    SynchronousOnlyOperation), on a short-lived helper thread whose connection is then closed.
    Blocks the loop for one indexed query, at most once per ACTIVE_CHECK_SECONDS."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()

    def closing() -> T:
        try:
            return fn()
        finally:
            connections.close_all()  # this helper thread's connections only

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-registry") as pool:
        return pool.submit(closing).result()


def _chat_follows_registry(backend: str) -> bool:
    """Whether the chat backend loads from a folder and the configured folder is the prepared
    default (under MODELS_DIR), the model prepare_models registers and the registry manages."""
    try:
        takes_folder = "model_dir" in inspect.signature(import_string(backend)).parameters
    except (TypeError, ValueError):
        return False
    configured = Path(settings.CHAT_MODEL).expanduser().resolve()
    return takes_folder and configured.is_relative_to(Path(settings.MODELS_DIR).resolve())


def _get(slot: str, setting_name: str, kind: str | None = None) -> Any:
    backend = getattr(settings, setting_name)
    spec: Spec = (backend,)
    active: ActiveVersion | None = None
    keep_current = False
    if kind == "chat" and _chat_follows_registry(backend):
        try:
            active = active_version(kind)
        except Exception:
            # The registry cannot be read (no migrations yet, database down, a test without
            # database access): keep what this process runs, or start from settings.
            log.warning("event=model_registry_unreadable kind=%s", kind, exc_info=True)
            keep_current = True
        else:
            if active is not None and not active.path:
                active = None  # a version without files (reported by a remote server)
            if active is not None:
                spec = (backend, active.path, active.adapter, active.key)
    with _lock:
        current = _instances.get((slot, backend))
        if current is not None and (keep_current or current[0] == spec):
            return current[1]
        instance = _build(backend, active)
        # Replacing the reference is all: requests still streaming from the previous instance
        # hold it and finish on it; it is freed after the last of them.
        _instances[(slot, backend)] = (spec, instance)
        return instance


def _build(backend: str, active: ActiveVersion | None) -> Any:
    cls = import_string(backend)
    if active is None:
        return cls()
    kwargs = {"model_dir": active.path}
    if active.adapter:
        kwargs["adapter_dir"] = active.adapter
    try:
        instance = cls(**kwargs)
    except Exception:
        # The active version's files went missing or broke after activation. Serving from the
        # configured model beats serving nothing; its usage records name that model, not the
        # active version, so provenance stays true.
        log.exception("event=active_model_unloadable version=%s fallback=settings", active.key)
        return cls()
    instance.model_version = active.key  # usage records name the registry version
    log.info("event=model_loaded version=%s", active.key)
    return instance


# The settings name classes that implement these interfaces (subclasses or look-alikes: tests
# use duck-typed doubles), so the instances are cast, not checked.


def get_text_generator() -> TextGenerator:
    return cast(TextGenerator, _get("chat", "TEXT_GENERATOR_BACKEND", kind="chat"))


def get_embedder() -> Embedder:
    return cast(Embedder, _get("embedding", "EMBEDDER_BACKEND"))


def get_image_generator() -> ImageGenerator:
    return cast(ImageGenerator, _get("image", "IMAGE_GENERATOR_BACKEND"))

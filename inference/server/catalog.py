"""Which models this server serves: the three kinds, loading their backends (up front with
`load_models`, or on first use), the names a client may call them by, and `GET /v1/models`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, overload

from django.conf import settings
from django.db import close_old_connections

from inference.base import Embedder, ImageGenerator, InferenceError, ModelUnavailable, TextGenerator
from inference.server.errors import APIError
from inference.services import get_embedder, get_image_generator, get_text_generator

log = logging.getLogger(__name__)

KINDS: dict[str, tuple[Callable[[], Any], str]] = {
    # kind -> (backend getter, the setting naming its model: accepted as an alias of the id)
    "chat": (get_text_generator, "CHAT_MODEL"),
    "embedding": (get_embedder, "EMBEDDING_MODEL"),
    "image": (get_image_generator, "IMAGE_MODEL"),
}
STARTED = int(time.time())


async def _backend(kind: str) -> Any:
    """The loaded backend of a kind (loading it the first time, off the event loop)."""
    getter, _ = KINDS[kind]

    def get() -> Any:
        try:
            return getter()
        finally:
            close_old_connections()  # the registry look-up's, on this worker thread

    try:
        return await asyncio.to_thread(get)
    except InferenceError:
        raise
    except Exception as exc:
        log.exception("event=model_load_failed kind=%s", kind)
        raise ModelUnavailable(f"The {kind} model is not available on this server.") from exc


def aliases(kind: str, model_version: str) -> set[str]:
    """Names a client may use for a model: its registry key ("chat:SmolLM2-135M-Instruct@9f2c..."),
    the key without its kind, the plain name, and the setting that configured it (so a client
    configured like the server, e.g. Parley's own remote backends, finds it by that)."""
    rest = model_version.split(":", 1)[-1]
    setting = str(getattr(settings, KINDS[kind][1]))
    return {model_version, rest, rest.split("@", 1)[0], setting, Path(setting).name} - {""}


@overload
async def find_model(kind: Literal["chat"], requested: str | None) -> TextGenerator: ...
@overload
async def find_model(kind: Literal["embedding"], requested: str | None) -> Embedder: ...
@overload
async def find_model(kind: Literal["image"], requested: str | None) -> ImageGenerator: ...
async def find_model(kind: str, requested: str | None) -> Any:
    """The backend of `kind`, when `requested` (the body's `model`) is absent or one of its names."""
    backend = await _backend(kind)
    if requested is not None and requested not in aliases(kind, backend.model_version):
        raise APIError(
            404,
            f"The model '{requested}' does not exist or is not a {kind} model; "
            f"this server has '{backend.model_version}'.",
            param="model",
            code="model_not_found",
        )
    return backend


async def list_models() -> dict[str, Any]:
    data = []
    for kind in KINDS:
        try:
            backend = await _backend(kind)
        except InferenceError:
            continue  # not loadable here: not offered
        entry = {"id": backend.model_version, "object": "model", "created": STARTED, "owned_by": "parley"}
        entry["kind"] = kind  # extension: which endpoint serves it
        if kind == "image":
            entry["meaningful"] = bool(getattr(backend, "meaningful", True))
        data.append(entry)
    return {"object": "list", "data": data}


def load_models() -> dict[str, str]:
    """Load every configured backend now (so no request pays for it); kind -> version or error."""
    loaded = {}
    for kind, (getter, _) in KINDS.items():
        started = time.perf_counter()
        try:
            loaded[kind] = getter().model_version
            log.info(
                "event=model_ready kind=%s version=%s seconds=%.1f",
                kind,
                loaded[kind],
                time.perf_counter() - started,
            )
        except Exception as exc:
            loaded[kind] = f"unavailable ({exc.__class__.__name__})"
            log.exception("event=model_unavailable kind=%s", kind)
    return loaded

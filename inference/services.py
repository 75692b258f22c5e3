"""Process-wide access to the configured model backends.

Each backend is built once per process on first use (loading a model costs seconds and hundreds
of MB) and shared by every request, task and consumer in that process.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from inference.base import Embedder, ImageGenerator, TextGenerator

_lock = threading.Lock()
_instances: dict[str, Any] = {}


def _get(setting_name: str) -> Any:
    path = getattr(settings, setting_name)
    with _lock:
        instance = _instances.get(path)
        if instance is None:
            instance = import_string(path)()
            _instances[path] = instance
        return instance


def get_text_generator() -> TextGenerator:
    return _get("TEXT_GENERATOR_BACKEND")


def get_embedder() -> Embedder:
    return _get("EMBEDDER_BACKEND")


def get_image_generator() -> ImageGenerator:
    return _get("IMAGE_GENERATOR_BACKEND")

"""The inference layer as an OpenAI-compatible HTTP service (`manage.py inference_server`).

The server knows nothing of batching or of models: every route calls one of the three interfaces
of inference/services.py (TextGenerator, Embedder, ImageGenerator), so whatever engine sits behind
them is served unchanged. What it adds is the HTTP edge: the bearer key, the body size limit,
OpenAI-shaped errors (a client gets a 4xx for anything it sent wrong, never a 500), server-sent
events, and Prometheus metrics.

One module per concept, one per OpenAI resource (as vLLM's `serving_*.py`):

- `app.py`: `create_app()`, the routes wired up, health, `/metrics`, exception handlers.
- `edge.py`: ASGI middleware run before any parsing: bearer key, body size, request metrics/logs.
- `errors.py`: OpenAI-style error bodies and the mapping from inference and validation errors.
- `schemas.py`: the pydantic request bodies.
- `metrics.py`: the Prometheus metrics of one app.
- `catalog.py`: which models are served, loading them, the names they answer to, `/v1/models`.
- `chat.py`: `/v1/chat/completions`, JSON or server-sent events.
- `embeddings.py`, `images.py`: `/v1/embeddings`, `/v1/images/generations`.
"""

from __future__ import annotations

from inference.server.app import create_app
from inference.server.catalog import load_models

__all__ = ["create_app", "load_models"]

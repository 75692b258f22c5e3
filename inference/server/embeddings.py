"""`POST /v1/embeddings`: texts to vectors, as float lists or base64 float32 bytes."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
from fastapi import Request

from inference.base import InferenceError
from inference.server.catalog import find_model
from inference.server.errors import APIError, raise_api
from inference.server.schemas import EmbeddingRequest


async def embeddings(request: Request, body: EmbeddingRequest) -> dict[str, Any]:
    embedder = await find_model("embedding", body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not 1 <= len(texts) <= 2048:
        raise APIError(400, "input must hold between 1 and 2048 texts.", param="input")
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise APIError(400, f"This model only gives {embedder.dim} dimensions.", param="dimensions")

    def work() -> tuple[np.ndarray, int]:
        return embedder.embed(texts), sum(embedder.count_tokens(t) for t in texts)

    try:
        vectors, tokens = await asyncio.to_thread(work)  # (n, dim) float32
    except InferenceError as exc:
        raise_api(exc, request.app.state.metrics, "/v1/embeddings", param="input")
    request.app.state.metrics.prompt_tokens.inc(tokens)
    if body.encoding_format == "base64":
        # What the openai client asks for by default: little-endian float32 bytes.
        rows: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        rows = vectors.tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": embedder.model_version,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }

"""`POST /v1/images/generations`: one PNG per request, as base64 (this server keeps no files)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Any, TypedDict

from django.conf import settings
from fastapi import Request

from inference.base import InferenceError, ModelBusy
from inference.server.catalog import find_model
from inference.server.errors import APIError, raise_api
from inference.server.schemas import ImageRequest

SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")


class Size(TypedDict, total=False):  # none given: the generator's default size
    width: int
    height: int


def _size(size: str | None) -> Size:
    if size in (None, "auto"):
        return {}
    match = SIZE.fullmatch(size)
    side = settings.IMAGE_MAX_SIDE
    if not match or not all(64 <= int(n) <= side and int(n) % 8 == 0 for n in match.groups()):
        raise APIError(400, f"size must be 'WxH', multiples of 8 from 64 to {side}.", param="size")
    return {"width": int(match[1]), "height": int(match[2])}


async def images_generations(request: Request, body: ImageRequest) -> dict[str, Any]:
    if body.n not in (None, 1):
        raise APIError(400, "Only n=1 is supported.", param="n")
    if body.response_format not in (None, "b64_json"):
        raise APIError(
            400,
            "Only response_format 'b64_json' is supported (this server keeps no files).",
            param="response_format",
        )
    if body.steps is not None and not 1 <= body.steps <= settings.IMAGE_MAX_STEPS:
        raise APIError(400, f"steps must be between 1 and {settings.IMAGE_MAX_STEPS}.", param="steps")
    size = _size(body.size)
    generator = await find_model("image", body.model)
    state = request.app.state

    def work() -> bytes:
        image = generator.generate(
            body.prompt,
            body.negative_prompt or "",
            **size,
            steps=body.steps,
            guidance=body.guidance,
            seed=body.seed,
        )
        return image.png()

    try:
        # One picture holds the model thread for its whole denoising loop: beyond the queue
        # depth, refuse rather than stack up waiting threads.
        if state.images_in_flight > settings.INFERENCE_QUEUE_DEPTH:
            raise ModelBusy()
        state.images_in_flight += 1
        try:
            png = await asyncio.to_thread(work)  # blocking: under a second to minutes
        finally:
            state.images_in_flight -= 1
    except InferenceError as exc:
        raise_api(exc, state.metrics, "/v1/images/generations", param="prompt")
    return {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(png).decode()}]}

"""The limits an image request is checked against before any work: prompt length, size, steps,
guidance and seed. A refusal is InvalidImageRequest, whose code names the field at fault (the
inference server answers it as that parameter's 400), or InputTooLong for an over-long prompt."""

from __future__ import annotations

import math
import secrets
from typing import Any

from django.conf import settings

from inference.base import ImageSpec, InputTooLong, InvalidImageRequest

MAX_PROMPT_CHARS = 2000  # CLIP reads 77 tokens; longer prompts are truncated by the pipeline anyway
MAX_GUIDANCE = 30.0
MAX_SEED = 2**63  # torch.Generator.manual_seed takes a signed 64-bit integer


def check_request(spec: ImageSpec, steps: int, guidance: float) -> tuple[str, str, int]:
    """(prompt, negative prompt, seed) for `spec` run at `steps` and `guidance` (the model's
    defaults already filled in): the prompts stripped, the seed drawn when the spec has none."""
    prompt, negative_prompt = spec.prompt, spec.negative_prompt or ""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidImageRequest("Describe the picture: the prompt is empty.", code="empty_prompt")
    if not isinstance(negative_prompt, str):
        raise InvalidImageRequest("The negative prompt must be text.", code="invalid_request")
    if len(prompt) > MAX_PROMPT_CHARS or len(negative_prompt) > MAX_PROMPT_CHARS:
        raise InputTooLong(f"Prompts are limited to {MAX_PROMPT_CHARS} characters.")
    max_side = settings.IMAGE_MAX_SIDE
    for side in (spec.width, spec.height):
        if not _int_between(side, 64, max_side) or side % 8:
            raise InvalidImageRequest(
                f"Width and height must be multiples of 8 from 64 to {max_side} pixels.",
                code="invalid_size",
            )
    if not _int_between(steps, 1, settings.IMAGE_MAX_STEPS):
        raise InvalidImageRequest(
            f"Steps must be a whole number from 1 to {settings.IMAGE_MAX_STEPS}.", code="invalid_steps"
        )
    if (
        isinstance(guidance, bool)
        or not isinstance(guidance, int | float)
        or not math.isfinite(guidance)
        or not 0 <= guidance <= MAX_GUIDANCE
    ):
        raise InvalidImageRequest(
            f"Guidance must be a number from 0 to {MAX_GUIDANCE:g}.", code="invalid_guidance"
        )
    if spec.seed is None:
        seed = secrets.randbelow(2**32)
    elif _int_between(spec.seed, 0, MAX_SEED - 1):
        seed = spec.seed
    else:
        raise InvalidImageRequest(
            f"The seed must be an integer from 0 to {MAX_SEED - 1}.", code="invalid_seed"
        )
    return prompt.strip(), negative_prompt.strip(), seed


def _int_between(value: Any, low: int, high: int) -> bool:
    # bool is an int subclass: True must not pass for a width of 1. Values come from callers
    # that may pass anything (JSON, forms): the type is checked here, not trusted.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

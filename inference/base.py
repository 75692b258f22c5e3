"""The interfaces product code uses to reach models. Nothing outside inference/ imports torch.

Backends (in-process or remote) implement these small classes and are chosen by dotted path in
settings (TEXT_GENERATOR_BACKEND, EMBEDDER_BACKEND, IMAGE_GENERATOR_BACKEND), the way Django picks
an EMAIL_BACKEND. The errors they raise are here too: InferenceError and its kinds.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from inference.errors import CodedError

_WORDISH = re.compile(r"\w+|[^\w\s]")


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy: the same prompt gives the same answer
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0  # >1 discourages repeating tokens (1.0 = off)
    ignore_eos: bool = False  # keep going past end-of-sequence (benchmarks: equal lengths)


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    model_version: str  # the registry key of the model that produced the text
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"
    seconds_to_first_token: float | None = None
    seconds_total: float | None = None


class InferenceError(CodedError):
    """A request the inference layer refused or could not complete; `code` is stable. As a
    DomainError its status is 503 (the model failed or is not there), 400 for what the request
    itself asked wrong."""

    code = "inference_error"
    message = "The model could not produce an answer."
    default_status = 503


class ModelBusy(InferenceError):
    code, message = "busy", "The assistant is busy with other requests; please try again in a moment."


class InputTooLong(InferenceError):
    code, message, default_status = "input_too_long", "The request is longer than the model accepts.", 400


class ModelUnavailable(InferenceError):
    code, message = "model_unavailable", "The model is not available. Run `python manage.py prepare_models`."


@dataclass
class Generation:
    """An answer being generated: iterate it for text deltas; `usage` is set once it ends."""

    deltas: AsyncIterator[str] | None = None  # set by the backend right after construction
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __aiter__(self) -> AsyncIterator[str]:
        assert self.deltas is not None
        return self.deltas


class TextGenerator:
    """Streams a chat completion.

    `stream(messages, params)` returns a Generation at once; iterating it yields text deltas as
    the model produces them and fills `generation.usage` at the end. Closing the iteration early
    (the client went away) cancels the work and frees the model for the next request.
    """

    model_version: str

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generation:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` for this model (prompt budgets are set in these). Backends with a
        tokenizer override this; the default counts words and punctuation."""
        return len(_WORDISH.findall(text))

    async def complete(self, messages: list[ChatMessage], params: GenerationParams) -> tuple[str, Usage]:
        generation = self.stream(messages, params)
        parts = [delta async for delta in generation]
        assert generation.usage is not None
        return "".join(parts), generation.usage


class Embedder:
    """Embeds texts: `embed(texts)` returns a float32 array (n, dim), each row L2-normalised."""

    model_version: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model counts them (chunk sizes are set in these). Backends
        with a tokenizer override this; the default counts words and punctuation, a close proxy
        for WordPiece/BPE on English prose."""
        return len(_WORDISH.findall(text))


@dataclass
class GeneratedImage:
    """One generated picture: a PIL image plus the facts that made it (prompt, negative_prompt,
    model_version, seed, steps, guidance, width, height, meaningful). `png()` returns PNG bytes
    carrying those facts as text chunks, so a file found later still says where it came from."""

    image: Image.Image  # PIL is imported only inside inference/
    metadata: dict[str, str]
    model_version: str

    def png(self) -> bytes:
        info = PngInfo()
        for key, value in self.metadata.items():
            info.add_text(f"parley:{key}", str(value))
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()


# progress(step, total, preview): preview is a small PIL image of the work so far, or None.
ImageProgress = Callable[[int, int, Image.Image | None], bool | None]


@dataclass(frozen=True)
class ImageSpec:
    """One picture as asked for (not yet checked): steps and guidance None mean the model's
    defaults, seed None a drawn one."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int | None
    guidance: float | None
    seed: int | None


class ImageGenerator:
    """Text to image. `meaningful` is False for the built-in offline pipeline, whose random
    weights make pictures that show nothing: user interfaces must say so next to them.

    Backends implement `render`; `generate` is the one signature callers use."""

    model_version: str
    meaningful: bool = True

    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 512,
        height: int = 512,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        progress: ImageProgress | None = None,
    ) -> GeneratedImage:
        """Blocking (seconds to minutes): call it from a Celery task or a worker thread.
        `progress(step, total, preview)` is called after each denoising step where the backend
        can (preview: a small PIL image of the work so far, or None); if it returns False the
        generation stops and ImageCancelled is raised."""
        spec = ImageSpec(prompt, negative_prompt, width, height, steps, guidance, seed)
        return self.render(spec, progress)

    def render(self, spec: ImageSpec, progress: ImageProgress | None) -> GeneratedImage:
        raise NotImplementedError


class ImageCancelled(InferenceError):
    code, message, default_status = "cancelled", "The image was cancelled.", 409


class InvalidImageRequest(InferenceError):
    """A size, step count, guidance, seed or prompt the generator refuses (before any work)."""

    code, message, default_status = "invalid_request", "The image request is not valid.", 400

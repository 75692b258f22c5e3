"""The request bodies of the OpenAI-compatible endpoints, as strict pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**63 - 1


class _Body(BaseModel):
    # Strict: "8" is not a number here, as with OpenAI. Unknown fields are accepted and ignored,
    # since clients send ones we have no use for (user, metadata, store, ...).
    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Body):
    type: str
    text: str | None = None


class MessageIn(_Body):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(_Body):
    include_usage: bool | None = None


class ChatRequest(_Body):
    model: str
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    n: int | None = None
    repetition_penalty: float | None = Field(None, gt=0, le=10)  # vLLM's extensions
    ignore_eos: bool | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None


class ImageRequest(_Body):
    prompt: str = Field(min_length=1)
    model: str | None = None
    n: int | None = None
    size: str | None = None
    response_format: str | None = None
    # Our extensions (extra_body in the openai client).
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = Field(None, ge=0, le=50)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)

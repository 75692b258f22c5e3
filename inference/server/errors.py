"""OpenAI-style errors: `APIError` and its JSON body, and the mapping to it from inference errors
and from request validation errors (a client gets a 4xx for anything it sent wrong, never a 500)."""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from inference.base import InferenceError, InputTooLong, InvalidImageRequest, ModelBusy, ModelUnavailable
from inference.server.metrics import Metrics

IMAGE_PARAMS = {  # InvalidImageRequest.code -> the request field at fault
    "empty_prompt": "prompt",
    "invalid_size": "size",
    "invalid_steps": "steps",
    "invalid_guidance": "guidance",
    "invalid_seed": "seed",
}


class APIError(Exception):
    """An error answered as OpenAI does: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)

    @classmethod
    def from_inference(cls, exc: InferenceError, param: str | None = None) -> APIError:
        if isinstance(exc, InvalidImageRequest):
            return cls(400, exc.message, param=IMAGE_PARAMS.get(exc.code, param), code=exc.code)
        if isinstance(exc, InputTooLong):
            return cls(400, exc.message, param=param, code="context_length_exceeded")
        if isinstance(exc, ModelBusy):
            # Retry-After: the openai client waits this long before its own retries.
            return cls(429, exc.message, type="rate_limit_error", code="busy", headers={"Retry-After": "1"})
        if isinstance(exc, ModelUnavailable):
            return cls(503, exc.message, type="server_error", code="model_unavailable")
        return cls(500, exc.message, type="server_error", code=exc.code)


class ClientGone(Exception):
    """The client closed the connection while we worked for it."""


# pydantic names the member of a union that failed in `loc`: not part of the parameter's path.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def validation_error(exc: RequestValidationError) -> APIError:
    first: dict[str, Any] = next(iter(exc.errors()), {})
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return APIError(400, f"The body is not valid JSON ({detail}).", code="invalid_json")
    param = ""
    for part in first.get("loc", ())[1:]:  # loc[0] is "body"
        if isinstance(part, int):
            param += f"[{part}]"
        elif part.isidentifier() and part[:1].islower() and part not in _TYPE_TAGS:
            param += f".{part}" if param else part
    if not param:
        return APIError(400, f"The body must be a JSON object ({first.get('msg', 'invalid')}).")
    return APIError(400, f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param)


def raise_api(exc: InferenceError, metrics: Metrics, endpoint: str, param: str | None = None) -> NoReturn:
    if isinstance(exc, ModelBusy):
        metrics.busy.labels(endpoint).inc()
    raise APIError.from_inference(exc, param) from exc

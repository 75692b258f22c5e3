"""The JSON API under /api/ (django-ninja); schema at /api/openapi.json.

Authentication: a staff session (with CSRF for writes) or `Authorization: Bearer <token>`
(`manage.py create_api_token USERNAME`). Every error is `{"error": {"code", "message"}}` with a
4xx status; nothing a client sends produces a 500.
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from answers.api import router as actions_router
from assistant.chat.api import router as assistant_router
from assistant.desk.api import router as desk_router
from assistant.learning.api import router as learning_router
from assistant.macros_api import router as macros_router
from content.api import router as content_router
from core.auth import BearerToken, StaffSession
from core.errors import DomainError
from governance.api import router as audit_router
from governance.people_api import router as people_router
from retrieval.api import router as retrieval_router

log = logging.getLogger(__name__)


class ParleyAPI(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        """The generated schema, plus what every operation may answer besides its own responses:
        the one error body, as each operation's `default` response (clients and schema-driven
        tests then know the shape of a 401, 403, 404, 409, 413, 422 or 429 anywhere)."""
        schema = super().get_openapi_schema(*args, **kwargs)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        default = {
            "description": "An error: a stable code and a message for people.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for path in schema["paths"].values():
            for operation in path.values():
                operation.setdefault("responses", {}).setdefault("default", default)
        return schema


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


api = ParleyAPI(
    title="Parley API",
    version="1",
    openapi_url="/openapi.json",
    docs_url="/docs",
    auth=[BearerToken(), StaffSession()],
    urls_namespace="api",
)


def _error(request: HttpRequest, status: int, code: str, message: str, **extra) -> HttpResponse:
    return api.create_response(request, {"error": {"code": code, "message": message, **extra}}, status=status)


@api.exception_handler(DomainError)
def _domain_error(request, exc: DomainError):
    """Every layer's errors, in the one error body."""
    return api.create_response(request, exc.body(), status=exc.status)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    return _error(request, 422, "invalid_request", "The request is not valid.", details=exc.errors)


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    return _error(request, 401, "unauthenticated", "Sign in, or send Authorization: Bearer <token>.")


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, "not_found", "No such resource.")


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return _error(request, exc.status_code, "http_error", str(exc))


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return _error(request, 413, "too_large", "The request body is over the size limit.")


@api.exception_handler(Exception)
def _unexpected(request, exc):
    log.exception("event=api_unhandled_error path=%s", request.path)
    return _error(request, 500, "internal_error", "Something went wrong on our side.")


# The order of the schema's sections.
for _router in (
    retrieval_router,
    assistant_router,
    learning_router,
    desk_router,
    macros_router,
    people_router,
    content_router,
    audit_router,
    actions_router,
):
    api.add_router("/", _router)

"""The app factory: the endpoints wired up behind the edge middleware, health, Prometheus metrics,
and the exception handlers that answer every error in OpenAI's shape."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.base import InferenceError
from inference.server.catalog import list_models
from inference.server.chat import chat_completions
from inference.server.edge import Edge
from inference.server.embeddings import embeddings
from inference.server.errors import APIError, ClientGone, validation_error
from inference.server.images import images_generations
from inference.server.metrics import Metrics

log = logging.getLogger(__name__)


def create_app() -> FastAPI:
    app = FastAPI(title="Parley inference", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics = Metrics()
    app.state.images_in_flight = 0
    app.add_middleware(Edge, metrics=metrics)

    v1 = APIRouter(prefix="/v1")
    v1.add_api_route("/models", list_models, methods=["GET"])
    v1.add_api_route("/chat/completions", chat_completions, methods=["POST"])
    v1.add_api_route("/embeddings", embeddings, methods=["POST"])
    v1.add_api_route("/images/generations", images_generations, methods=["POST"])
    app.include_router(v1)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else None
        headers = dict(exc.headers) if exc.headers else None
        return APIError(exc.status_code, str(exc.detail), code=kind, headers=headers).response()

    @app.exception_handler(InferenceError)
    async def inference_error(request: Request, exc: InferenceError) -> JSONResponse:
        return APIError.from_inference(exc).response()

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; counted in the metrics as 499

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("event=inference_internal_error path=%s", request.url.path)
        return APIError(500, "Internal error.", type="server_error", code="internal_error").response()

    return app

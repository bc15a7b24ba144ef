"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the matching status."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatbot.errors import ChatbotError, ServerFault

log = logging.getLogger(__name__)
INTERNAL = "The server had an error while processing your request (its log says more)"
UNAVAILABLE = "A model this request needs is unavailable at the moment (the server's log says why); try again later"

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error", 409: "invalid_request_error",
         413: "invalid_request_error",
         422: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}


WHY = {400: "the request is invalid (a field named in `param`), or its Host header is not one this server answers",
       401: "no API key, or a wrong one (only when the server has keys)",
       404: "no such model, session, file or job",
       409: "the resource is in use",
       413: "the request body is too large",
       500: "the server had an error (its log says more)",
       503: "a model this request needs is unavailable at the moment"}


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="`invalid_request_error`, `authentication_error`, `server_error`, …")
    param: str | None = Field(description="the request field at fault, when there is one")
    code: str | None


class ErrorResponse(BaseModel):
    """An error in OpenAI's shape."""

    error: ErrorDetail


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI declaration of error answers with these *statuses*, each in OpenAI's shape."""
    return {status: {"model": ErrorResponse, "description": WHY[status]} for status in statuses}


# What any route may answer: the middlewares' refusals (Host, key, body size) and invalid input (400, never
# FastAPI's 422: see install()), and the server's own fault
EVERY_ROUTE = responses(400, 401, 413, 500)


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"), "param": param, "code": code}}


async def send_error(send: Any, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
    """Answer from ASGI middleware, before the app: an error in OpenAI's shape."""
    body = json.dumps(error_body(status, message, None, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def route_path(scope: dict[str, Any]) -> str:
    """The request's path below the app's mount point (the whole path when the app is not mounted)."""
    path, root = scope["path"], scope.get("root_path", "")
    return (path[len(root):] or "/") if root and path.startswith(root) else path


def answer_to(exc: Exception, where: str = "") -> tuple[int, dict]:
    """The status and OpenAI-shaped body for an error a handler raised; the server's own faults are logged, not told."""
    if isinstance(exc, APIError):
        return exc.status, error_body(exc.status, exc.message, exc.param, exc.code)
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, error_body(exc.status_code, str(exc.detail))
    if isinstance(exc, ServerFault):  # the server's fault: the details go to the log, not to the client
        log.error("a model could not answer%s: %s", where, exc)
        return 503, error_body(503, UNAVAILABLE)
    if isinstance(exc, ChatbotError):
        return 400, error_body(400, str(exc))
    log.error("internal error%s", where, exc_info=exc)
    return 500, error_body(500, INTERNAL)


async def guarded(events: AsyncIterator[str], on_error: Callable[[dict], str]) -> AsyncIterator[str]:
    """Pass server-sent *events* on; when they fail after the stream started, end it with an error event
    (``on_error(body)``, the body in OpenAI's error shape) rather than dropping the connection."""
    try:
        async for event in events:
            yield event
    except Exception as exc:  # noqa: BLE001 - told to the client as an event, logged when it is ours
        yield on_error(answer_to(exc, " while streaming")[1])


def _without_422(app: FastAPI) -> None:
    """Drop FastAPI's 422 answers from the app's OpenAPI schema: invalid input is answered 400 (see install)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Answer every error in OpenAI's shape, and say so in the app's OpenAPI schema."""
    _without_422(app)

    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message, exc.param, exc.code), status_code=exc.status)

    @app.exception_handler(ChatbotError)
    async def _chatbot(_: Request, exc: ChatbotError) -> JSONResponse:
        status, body = answer_to(exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return JSONResponse(error_body(400, message, param, "invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        status, body = answer_to(exc, f" answering {request.method} {request.url.path}")
        return JSONResponse(body, status_code=status)

"""The size of a request body: a JSON body past ``MAX_BODY_BYTES`` (an upload past ``MAX_UPLOAD_BYTES``)
is answered 413 in OpenAI's error shape before the app reads it all, whether or not it says its length."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from chatbot.defaults import MAX_BODY_BYTES, MAX_UPLOAD_BYTES
from chatbot.web.errors import route_path, send_error

UPLOAD_PATHS = ("/v1/files",)
MULTIPART_SLACK = 64 << 10  # the multipart envelope around an upload: boundaries, headers, the purpose field


class _TooLarge(HTTPException):
    """Raised while the body is read: an HTTP error, so the app's handlers answer it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = MAX_UPLOAD_BYTES + MULTIPART_SLACK if route_path(scope) in UPLOAD_PATHS else MAX_BODY_BYTES
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await send_error(send, 413, _TooLarge(limit).detail, "request_too_large")
        seen, started = 0, False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def watched(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await send_error(send, 413, _TooLarge(limit).detail, "request_too_large")


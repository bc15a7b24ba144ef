"""Who may use the server: API keys, the Host header, cross-origin browsers.

* **API keys**: with keys set, every request but ``/healthz``, ``/readyz`` and the static pages
  (the chat page ``/``, ``/docs``, the OpenAPI schema, which hold no data) needs
  ``Authorization: Bearer KEY``; otherwise a 401 in OpenAI's error shape. Keys are compared in
  constant time.
* **Host**: only the names allowed answer (loopback names by default), so a web page can't reach a
  server on loopback through a DNS name of its own (DNS rebinding). ``*`` allows any.
* **CORS**: off unless origins are given; then those origins may call the API from a browser.
"""

from __future__ import annotations

import hmac
from typing import Any

from pydantic import BaseModel, Field

from chatbot.web.errors import route_path, send_error

LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1"]
OPEN_PATHS = ("/healthz", "/readyz", "/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc")


class Access(BaseModel):
    """The access settings of ``create_app`` and ``chatbot serve``."""

    api_keys: list[str] = Field(default_factory=list, description="keys accepted as `Authorization: Bearer KEY`; none: no key asked")
    allowed_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS), description="Host header names answered; `*` for any")
    cors_origins: list[str] = Field(default_factory=list, description="origins a browser may call the API from; none: CORS off")

    def host_allowed(self, host: str) -> bool:
        return "*" in self.allowed_hosts or _hostname(host) in {h.lower().strip("[]") for h in self.allowed_hosts}

    def key_accepted(self, authorization: str | None) -> bool:
        if not self.api_keys:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and any(hmac.compare_digest(given.strip().encode(), key.encode()) for key in self.api_keys)


def _hostname(host: str) -> str:
    """The name in a Host header, without the port (``[::1]:8000`` → ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class AccessMiddleware:
    """ASGI middleware enforcing :class:`Access` on HTTP requests (streams pass through untouched)."""

    def __init__(self, app: Any, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not self.access.host_allowed(headers.get("host", "")):
            return await send_error(send, 400, "Invalid Host header: this server answers only the names it was started for", "invalid_host")
        path = route_path(scope)
        preflight = scope.get("method") == "OPTIONS" and "access-control-request-method" in headers  # a browser asking CORS
        if path not in OPEN_PATHS and not preflight and not self.access.key_accepted(headers.get("authorization")):
            given = "authorization" in headers
            message = ("Incorrect API key provided" if given else
                       "You didn't provide an API key: send it as `Authorization: Bearer KEY`")
            return await send_error(send, 401, message, "invalid_api_key", {"www-authenticate": "Bearer"})
        return await self.app(scope, receive, send)


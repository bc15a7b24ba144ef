"""The one OpenAI SDK client set-up, for hosted skills and hosted fine-tuning alike.

It points at OpenAI or any OpenAI-compatible server (vLLM, llama.cpp, Ollama, ``chatbot serve``),
insists on a key only where OpenAI's own server needs one, and turns the SDK's errors into one line
that names the skill (when there is one) and the server. Timeouts, and retries with exponential
backoff on 408/409/429/5xx and lost connections, come from the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chatbot.errors import ChatbotError, ServerFault

OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "unused"  # local servers accept any key; the SDK insists on one


def server_url(base_url: str | None) -> str:
    """*base_url* without a trailing slash, OpenAI's when None."""
    return (base_url or OPENAI_URL).rstrip("/")


def make_client(base_url: str | None, api_key_env: str = "OPENAI_API_KEY", *, skill: str | None = None, timeout: float = 120.0,
                max_retries: int = 3, key_hint: str | None = None) -> Any:
    """An ``openai.OpenAI`` client; a clear error when OpenAI's own server is used without a key."""
    import openai

    url = server_url(base_url)
    key = os.environ.get(api_key_env)
    if not key and url == OPENAI_URL:
        raise ChatbotError(f"{skill_prefix(skill)}{url} needs an API key: ${api_key_env} is not set",
                           hint=key_hint or f"export {api_key_env}=sk-…, or pass --base-url")
    return openai.OpenAI(base_url=url, api_key=key or NO_KEY, timeout=timeout, max_retries=max_retries)


@contextmanager
def api_errors(base_url: str | None, *, skill: str | None = None, api_key_env: str = "OPENAI_API_KEY", model: str | None = None,
               url_hint: str = "is the server running, and is --base-url right?") -> Iterator[None]:
    """Turn the SDK's connection and status errors into one clear line naming the skill and the server."""
    import openai

    url, who = server_url(base_url), skill_prefix(skill)
    try:
        yield
    except openai.APIConnectionError as exc:
        raise ServerFault(f"{who}cannot reach {url}: {exc.__cause__ or exc}", hint=url_hint) from None
    except openai.AuthenticationError:
        raise ServerFault(f"{who}{url} rejected the API key in ${api_key_env}", hint="check the key") from None
    except openai.NotFoundError as exc:
        if model is None:
            raise ChatbotError(f"{who}{url} answered 404: {error_message(exc)}") from None
        raise ServerFault(f"{who}{url} has no model {model!r}", hint="check `model:` in models.yaml against the server's /v1/models") from None
    except openai.APIStatusError as exc:
        fault = ServerFault if exc.status_code >= 500 else ChatbotError
        raise fault(f"{who}{url} answered {exc.status_code}: {error_message(exc)}") from None


def error_message(exc: Any) -> str:
    """The server's own message in an SDK error (OpenAI's error shape, or a bare body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        found = body.get("message") or (error.get("message") if isinstance(error, dict) else error)
        if found:
            return str(found)
    return str(getattr(exc, "message", None) or exc)


def skill_prefix(skill: str | None) -> str:
    """``skill 'NAME': `` before an error message, when a skill asked."""
    return f"skill {skill!r}: " if skill else ""

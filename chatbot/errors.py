"""The one error type users see: a single line naming the file, line or field and what to do."""

from __future__ import annotations


class ChatbotError(Exception):
    """An error caused by the user's input or environment, printed as one clear line by the CLI."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class ServerFault(ChatbotError):
    """An error that is the server's, not the request's: a model that can't be loaded or reached.

    The CLI prints it like any other; the web API answers 503 with a generic message and logs this one.
    """

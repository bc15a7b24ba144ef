"""The bot on the web: OpenAI-compatible API, REST API, chat page (``create_app``)."""

from chatbot.web.app import create_app

__all__ = ["create_app"]

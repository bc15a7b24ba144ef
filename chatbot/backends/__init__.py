"""Where a model runs. Every model call goes through the :class:`Backend` interface."""

from chatbot.backends.base import Backend, Completion, GenerationRequest

__all__ = ["Backend", "Completion", "GenerationRequest"]

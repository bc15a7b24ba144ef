"""The backend interface: requests in, token streams out."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Literal, Protocol

from pydantic import BaseModel, Field


class GenerationRequest(BaseModel):
    """One completion request: a full prompt (separator included) and how to sample."""

    prompt: str
    base_model: str
    adapter: str | None = Field(default=None, description="peft adapter folder; None runs the base model")
    max_tokens: int = Field(default=128, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    logprobs: int | None = Field(default=None, ge=0, le=20, description="also return each token's log-probability and this many alternatives")
    skill: str | None = Field(default=None, description="the skill asking, for error messages")


class TokenLogprobs(BaseModel):
    """Log-probabilities of a completion's tokens, in the legacy completions API's shape."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class Completion(BaseModel):
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    logprobs: TokenLogprobs | None = None
    queued_ms: float = Field(default=0.0, description="time the request waited for the model, busy with others")


# pieces of text, then (as the generator's return value) the whole Completion with its finish reason and token counts
CompletionStream = Generator[str, None, Completion]


class Backend(Protocol):
    """Where a model runs: every caller (the bot, evaluation, the web API) goes through these four methods."""

    def stream(self, request: GenerationRequest) -> CompletionStream:
        """Yield the completion's text piece by piece (never the stop sequence itself), then return the :class:`Completion`."""
        ...

    def complete(self, request: GenerationRequest) -> Completion:
        """The whole completion, with its finish reason and token counts."""
        ...

    def preload(self, base: str, adapter: str | None = None) -> None:
        """Load *base* (and *adapter*) now rather than on the first request; a no-op where nothing loads here."""
        ...

    def count_tokens(self, base: str, text: str) -> int:
        """How many tokens *text* is for *base* (an estimate where the tokenizer is not known here)."""
        ...


def relay(stream: Iterator[str], pieces: list[str], show: bool = True) -> Generator[str, None, Completion | None]:
    """Pass a backend's pieces on (when *show*), keeping them in *pieces*; returns the stream's Completion (None from a plain iterator)."""
    while True:
        try:
            piece = next(stream)
        except StopIteration as end:
            return end.value
        pieces.append(piece)
        if show:
            yield piece


def drain(stream: CompletionStream) -> Completion:
    """Run a backend's stream to its end; its Completion."""
    while True:
        try:
            next(stream)
        except StopIteration as end:
            if not isinstance(end.value, Completion):
                raise TypeError("the backend's stream ended without its Completion") from None
            return end.value


def complete_all(backend: Backend, requests: list[GenerationRequest], on_done: Callable[[], None] | None = None) -> list[Completion]:
    """Every request's completion, in order: together where the backend batches (its ``complete_many``), else one by one."""
    together = getattr(backend, "complete_many", None)
    if together is not None:
        return together(requests, on_done=on_done)
    answers = []
    for request in requests:
        answers.append(backend.complete(request))
        if on_done:
            on_done()
    return answers

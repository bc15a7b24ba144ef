"""The ``openai`` backend: skills answered by OpenAI or any OpenAI-compatible server (vLLM, llama.cpp, Ollama, ours).

A completion-style fine-tune gets the legacy completions call (the prompt ends with the separator,
generation stops at the stop sequence); a chat model gets one user message. Timeouts, and retries
with exponential backoff on 408/409/429/5xx and lost connections, come from the openai SDK.
"""

from __future__ import annotations

from typing import Any, Literal

from chatbot.backends.base import Completion, CompletionStream, GenerationRequest, TokenLogprobs
from chatbot.errors import ServerFault
from chatbot.runtime.openai_client import api_errors, make_client, server_url, skill_prefix


class OpenAIBackend:
    def __init__(self, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", api: Literal["completions", "chat"] = "completions",
                 timeout: float = 120.0, max_retries: int = 3) -> None:
        self.base_url = server_url(base_url)
        self.api_key_env = api_key_env
        self.api = api
        self.timeout, self.max_retries = timeout, max_retries
        self._client: Any = None

    def client(self, skill: str | None = None) -> Any:
        """The SDK client; a clear error when OpenAI's own server is used without a key."""
        if self._client is None:
            self._client = make_client(self.base_url, self.api_key_env, skill=skill, timeout=self.timeout, max_retries=self.max_retries,
                                       key_hint=f"export {self.api_key_env}=sk-…, or set api_key_env / base_url for the skill in models.yaml")
        return self._client

    def preload(self, base: str, adapter: str | None = None) -> None:
        """Nothing to load here: the server holds the model."""

    def count_tokens(self, base: str, text: str) -> int:
        """The server's tokenizer is not known here: words stand in for tokens."""
        return len(text.split())

    def _call(self, request: GenerationRequest, stream: bool) -> Any:
        params: dict[str, Any] = {"model": request.base_model, "max_tokens": request.max_tokens, "temperature": request.temperature,
                                  "top_p": request.top_p, "stream": stream}
        if stream:
            params["stream_options"] = {"include_usage": True}  # the server's own token counts, in a last chunk
        if request.stop:
            params["stop"] = request.stop[:4]
        if request.seed is not None:
            params["seed"] = request.seed
        client = self.client(request.skill)
        with api_errors(self.base_url, skill=request.skill, api_key_env=self.api_key_env, model=request.base_model,
                        url_hint="is the server running, and is base_url right?"):
            if self.api == "chat":
                if request.logprobs is not None:
                    params |= {"logprobs": True, "top_logprobs": request.logprobs}
                return client.chat.completions.create(messages=[{"role": "user", "content": request.prompt}], **params)
            if request.logprobs is not None:
                params["logprobs"] = request.logprobs
            return client.completions.create(prompt=request.prompt, **params)

    def stream(self, request: GenerationRequest) -> CompletionStream:
        import openai

        pieces: list[str] = []
        finish, usage = "stop", None
        try:
            for chunk in self._call(request, stream=True):
                usage = getattr(chunk, "usage", None) or usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish = "length" if choice.finish_reason == "length" else finish
                piece = choice.delta.content if self.api == "chat" else choice.text
                if piece:
                    pieces.append(piece)
                    yield piece
        except openai.APIError as exc:  # the stream broke off midway
            raise ServerFault(f"{skill_prefix(request.skill)}{self.base_url}: the stream failed: {exc}") from None
        text = "".join(pieces)
        if usage is None:  # a server that does not send usage: an estimate
            return Completion(text=text, finish_reason=finish, prompt_tokens=self.count_tokens(request.base_model, request.prompt),
                              completion_tokens=self.count_tokens(request.base_model, text))
        return Completion(text=text, finish_reason=finish, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)

    def complete(self, request: GenerationRequest) -> Completion:
        response = self._call(request, stream=False)
        choice = response.choices[0]
        usage = response.usage
        text = choice.message.content or "" if self.api == "chat" else choice.text
        logprobs = None
        if self.api == "completions" and choice.logprobs is not None:
            lp = choice.logprobs
            logprobs = TokenLogprobs(tokens=lp.tokens or [], token_logprobs=lp.token_logprobs or [], top_logprobs=lp.top_logprobs or [],
                                     text_offset=lp.text_offset or [])
        return Completion(text=text, finish_reason="length" if choice.finish_reason == "length" else "stop",
                          prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=usage.completion_tokens if usage else 0,
                          logprobs=logprobs)


"""The OpenAI-compatible endpoints: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Model ``chatbot`` is the whole bot: the last user message is routed, with conversation state when a
session is named (the request's ``user`` field or an ``X-Session-Id`` header), else with the
messages array as the history. A skill's name as the model calls that skill directly.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chatbot.answer import skill_request
from chatbot.bot import Bot, Reply, ReplyStream
from chatbot.web.errors import APIError
from chatbot.web.streaming import in_thread, iterate_in_thread, sse

BOT_MODEL = "chatbot"
SKILL_HEADER = "X-Chatbot-Skill"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """What both completion calls share."""

    model_config = ConfigDict(extra="allow")  # other OpenAI parameters are accepted and ignored
    model: str
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def overrides(self) -> dict[str, Any]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        if stop is not None and (len(stop) > 4 or not all(stop)):
            raise APIError(400, "stop: up to 4 non-empty sequences", param="stop")
        values = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p, "stop": stop, "seed": self.seed}
        return {k: v for k, v in values.items() if v is not None}


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    n: int = Field(default=1, ge=1, le=1, description="one choice: a routed reply is one turn of a conversation")


class CompletionRequest(Sampling):
    prompt: str | list[str]
    n: int = Field(default=1, ge=1, le=16)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None


def _now() -> int:
    return int(time.time())


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _about(reply: Reply | None, stream: ReplyStream | None = None) -> dict[str, Any]:
    """The extra ``chatbot`` field: which skill answered and why."""
    if reply is None:
        assert stream is not None
        return {"skill": stream.skill, "score": stream.score, "fallback": stream.fallback}
    return {"skill": reply.skill, "score": reply.score, "fallback": reply.fallback, "session_id": reply.session_id,
            "turn": reply.turn, "label": reply.label, "entities": reply.entities,
            "runners_up": [c.model_dump() for c in reply.runners_up], "latency": reply.latency.model_dump()}


def build_router(bot: Bot, app_state: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
    executor = app_state.executor

    def count(skill_name: str | None, text: str) -> int:
        skill = bot.registry.skills.get(skill_name or "")
        backend = bot.backend_for(skill) if skill else None
        if backend is None or not hasattr(backend, "count_tokens"):
            return len(text.split())
        return backend.count_tokens(skill.base_model, text)

    @router.get("/models")
    async def list_models() -> dict[str, Any]:
        """The bot itself (model ``chatbot``, which routes) and each skill."""
        data = [{"id": BOT_MODEL, "object": "model", "created": app_state.started, "owned_by": "chatbot"}]
        for skill in bot.registry.skills.values():
            created = int(skill.training.trained_at.timestamp()) if skill.training else app_state.started
            data.append({"id": skill.name, "object": "model", "created": created, "owned_by": "chatbot", "kind": skill.kind,
                         "description": skill.description})
        return {"object": "list", "data": data}

    @router.get("/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        for model in (await list_models())["data"]:
            if model["id"] == model_id:
                return model
        raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")

    def check_model(model: str) -> None:
        if model != BOT_MODEL and model not in bot.registry.skills:
            raise APIError(404, f"The model '{model}' does not exist: use '{BOT_MODEL}' or a skill ({', '.join(bot.registry.skills)})",
                           param="model", code="model_not_found")

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, x_session_id: str | None = Header(default=None)) -> Any:
        """Route the last user message (model ``chatbot``) or ask one skill (model = its name)."""
        check_model(body.model)
        if body.messages[-1].role != "user" or not body.messages[-1].text().strip():
            raise APIError(400, "messages: the last message must be a non-empty user message", param="messages")
        text = body.messages[-1].text()
        overrides = body.overrides()
        if body.max_completion_tokens:
            overrides["max_tokens"] = body.max_completion_tokens
        session = x_session_id or body.user
        if body.model == BOT_MODEL and session:
            stream = bot.stream(session, text, **overrides)
        else:
            history, pending = [], None
            for message in body.messages[:-1]:
                if message.role == "user":
                    pending = message.text()
                elif message.role == "assistant" and pending is not None:
                    history.append((pending, message.text()))
                    pending = None
            stream = bot.stream_once(text, history=history, skill=None if body.model == BOT_MODEL else body.model, **overrides)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", _now()
        tokens = iterate_in_thread(executor, lambda: iter(stream))
        first = await anext(tokens, None)  # routed by now: the skill is known for the header
        headers = {SKILL_HEADER: stream.skill or "fallback"}
        if body.stream:
            return StreamingResponse(_chat_chunks(ident, created, body, first, tokens, stream, count), media_type="text/event-stream",
                                     headers=headers)
        pieces = [first or ""] + [piece async for piece in tokens]
        reply = stream.reply
        assert reply is not None
        usage = _usage(await in_thread(executor, lambda: count(reply.skill, text)), await in_thread(executor, lambda: count(reply.skill, "".join(pieces))))
        return JSONResponse({
            "id": ident, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop", "logprobs": None}],
            "usage": usage, "chatbot": _about(reply),
        }, headers=headers)

    async def _chat_chunks(ident: str, created: int, body: ChatCompletionRequest, first: str | None, tokens: AsyncIterator[str],
                           stream: ReplyStream, count: Any) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": body.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
            return sse(json.dumps(payload, ensure_ascii=False))

        yield chunk({"role": "assistant", "content": ""})
        pieces = []
        if first:
            pieces.append(first)
            yield chunk({"content": first})
        async for piece in tokens:
            pieces.append(piece)
            yield chunk({"content": piece})
        yield chunk({}, "stop", chatbot=_about(stream.reply))
        if body.stream_options and body.stream_options.include_usage:
            text = body.messages[-1].text()
            usage = _usage(await in_thread(executor, lambda: count(stream.skill, text)), await in_thread(executor, lambda: count(stream.skill, "".join(pieces))))
            yield sse(json.dumps({"id": ident, "object": "chat.completion.chunk", "created": created, "model": body.model,
                                  "choices": [], "usage": usage}))
        yield sse("[DONE]")

    @router.post("/completions")
    async def completions(body: CompletionRequest) -> Any:
        """The legacy call: the prompt as given (separator included) straight to one skill."""
        if body.model == BOT_MODEL:
            raise APIError(400, f"model '{BOT_MODEL}' routes chat messages: use /v1/chat/completions, or name a skill here", param="model")
        check_model(body.model)
        if body.suffix:
            raise APIError(400, "suffix is not supported", param="suffix")
        if body.stream and body.logprobs is not None:
            raise APIError(400, "logprobs are not available when streaming", param="logprobs")
        skill = bot.registry.skills[body.model]
        backend = bot.backend_for(skill)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts or not all(prompts):
            raise APIError(400, "prompt: give a non-empty prompt", param="prompt")
        overrides = body.overrides()
        requests = []
        for p_index, prompt in enumerate(prompts):
            for j in range(body.n):
                seed = overrides.get("seed")
                settings = overrides | ({"seed": seed + j} if seed is not None else {}) | ({"logprobs": body.logprobs} if body.logprobs is not None else {})
                requests.append((p_index * body.n + j, prompt, skill_request(bot.registry, skill, prompt, **settings)))
        ident, created = f"cmpl-{uuid.uuid4().hex}", _now()
        if body.stream:
            return StreamingResponse(_completion_chunks(ident, created, body, backend, requests), media_type="text/event-stream",
                                     headers={SKILL_HEADER: skill.name})
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index, prompt, req in requests:
            done = await in_thread(executor, lambda req=req: backend.complete(req))
            text = (prompt if body.echo else "") + done.text
            logprobs = done.logprobs.model_dump() if done.logprobs is not None else None
            choices.append({"index": index, "text": text, "logprobs": logprobs, "finish_reason": done.finish_reason})
            prompt_tokens += done.prompt_tokens
            completion_tokens += done.completion_tokens
        return JSONResponse({"id": ident, "object": "text_completion", "created": created, "model": body.model, "choices": choices,
                             "usage": _usage(prompt_tokens, completion_tokens)}, headers={SKILL_HEADER: skill.name})

    async def _completion_chunks(ident: str, created: int, body: CompletionRequest, backend: Any, requests: list) -> AsyncIterator[str]:
        def chunk(index: int, text: str, finish: str | None = None) -> str:
            return sse(json.dumps({"id": ident, "object": "text_completion", "created": created, "model": body.model,
                                   "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}, ensure_ascii=False))

        for index, prompt, req in requests:
            if body.echo:
                yield chunk(index, prompt)
            async for piece in iterate_in_thread(executor, lambda req=req: backend.stream(req)):
                yield chunk(index, piece)
            yield chunk(index, "", "stop")
        yield sse("[DONE]")

    return router

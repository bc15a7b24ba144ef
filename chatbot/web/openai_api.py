"""The OpenAI-compatible endpoints: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Model ``chatbot`` is the whole bot: the last user message is routed, with conversation state when a
session is named (the request's ``user`` field or an ``X-Session-Id`` header), else with the
messages array as the history. A skill's name as the model calls that skill directly.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from chatbot import __version__
from chatbot.answer import skill_request
from chatbot.backends.base import Backend, Completion, CompletionStream
from chatbot.bot import Bot, Reply, ReplyStream
from chatbot.runtime.base_models import base_origin
from chatbot.web.dependencies import AppState, BotDep, StateDep
from chatbot.web.errors import APIError, guarded, responses
from chatbot.web.schemas import (
    AssistantMessage,
    ChatbotInfo,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    CompletionRequest,
    Model,
    ModelList,
    TextChoice,
    TextCompletion,
    TextCompletionChunk,
    Usage,
)
from chatbot.web.streaming import in_thread, iterate_in_thread, sse

BOT_MODEL = "chatbot"
SKILL_HEADER = "X-Chatbot-Skill"

endpoints = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


def _streamed(chunks: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI note that a request with ``stream`` is answered with server-sent events, and its own errors:
    an unknown model (404), a model that can't be loaded or reached (503)."""
    return {200: {"content": {"text/event-stream": {}},
                  "description": f"the JSON object, or with `stream`: server-sent events, each a {chunks}, then `data: [DONE]`"},
            **responses(404, 503)}


def _error_event(body: dict) -> str:
    """A stream that failed after it started ends with the error, as OpenAI's streams do (the SDK raises it)."""
    return sse(json.dumps(body)) + sse("[DONE]")


def _event(chunk: BaseModel) -> str:
    """A chunk as one server-sent event: the fields it was given only."""
    return sse(chunk.model_dump_json(exclude_unset=True))


def _usage(reply: Reply) -> Usage:
    """Tokens of the prompt the skill's model read (separator and history included) and of its answer; 0 for the fallback."""
    return Usage.of(reply.usage.prompt_tokens, reply.usage.completion_tokens)


def fingerprint(bot: Bot) -> str:
    """``system_fingerprint``: changes when the package, the skills, their adapters or their settings change."""
    registry = bot.registry
    key = (__version__, [(s.model_dump(mode="json", exclude={"training"}), s.training.adapter_id if s.training else None)
                         for s in registry.skills.values()], registry.router.model_dump(mode="json"))
    return "fp_" + hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _about(reply: Reply) -> ChatbotInfo:
    return ChatbotInfo(skill=reply.skill, score=reply.score, fallback=reply.fallback, session_id=reply.session_id, turn=reply.turn,
                       label=reply.label, entities=reply.entities, runners_up=reply.runners_up, latency=reply.latency)


def _check_model(bot: Bot, model: str) -> None:
    if model != BOT_MODEL and model not in bot.registry.skills:
        raise APIError(404, f"The model '{model}' does not exist: use '{BOT_MODEL}' or a skill ({', '.join(bot.registry.skills)})",
                       param="model", code="model_not_found")


def _models(bot: Bot, state: AppState) -> list[Model]:
    started = state.started
    models = [Model(id=BOT_MODEL, object="model", created=started, owned_by="chatbot")]
    bases = list(dict.fromkeys([*state.base_models, *(s.base_model for s in bot.registry.skills.values() if s.backend == "local")]))
    for skill in bot.registry.skills.values():
        created = int(skill.training.trained_at.timestamp()) if skill.training else started
        parent = skill.base_model if skill.backend == "local" else skill.model
        models.append(Model(id=skill.name, object="model", created=created, owned_by="chatbot", kind=skill.kind,
                            description=skill.description, parent=parent, root=base_origin(skill.base_model) if skill.backend == "local" else None))
    # the base models: those fine-tuning jobs may start from and those the skills are made on, as OpenAI and vLLM list theirs
    models += [Model(id=base, object="model", created=started, owned_by="chatbot", kind="base", root=base_origin(base)) for base in bases
               if base not in bot.registry.skills and base != BOT_MODEL]
    return models


# `kind` and `description` are sent for skills only: the fields a model was not given are left out.
@endpoints.get("/models", response_model=ModelList, response_model_exclude_unset=True)
async def list_models(bot: BotDep, state: StateDep) -> ModelList:
    """The bot itself (model ``chatbot``, which routes) and each skill."""
    return ModelList(object="list", data=_models(bot, state))


@endpoints.get("/models/{model_id}", response_model=Model, response_model_exclude_unset=True, responses=responses(404))
async def get_model(model_id: str, bot: BotDep, state: StateDep) -> Model:
    for model in _models(bot, state):
        if model.id == model_id:
            return model
    raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")


@endpoints.post("/chat/completions", response_model=ChatCompletion, responses=_streamed("chat.completion.chunk"))
async def chat_completions(body: ChatCompletionRequest, bot: BotDep, state: StateDep, response: Response,
                           x_session_id: str | None = Header(default=None)) -> Any:
    """Route the last user message (model ``chatbot``) or ask one skill (model = its name)."""
    _check_model(bot, body.model)
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
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    tokens = iterate_in_thread(state.executor, lambda: iter(stream))
    first = await anext(tokens, None)  # routed by now: the skill is known for the header
    headers = {SKILL_HEADER: stream.skill or "fallback"}
    if body.stream:
        chunks = _chat_chunks(ident, created, body, first, tokens, stream, bot, state)
        return StreamingResponse(guarded(chunks, _error_event), media_type="text/event-stream", headers=headers)
    async for _ in tokens:
        pass
    reply = stream.reply
    assert reply is not None
    response.headers.update(headers)
    return ChatCompletion(id=ident, object="chat.completion", created=created, model=body.model, system_fingerprint=fingerprint(bot),
                          choices=[ChatChoice(index=0, message=AssistantMessage(role="assistant", content=reply.text),
                                              finish_reason=reply.finish_reason, logprobs=None)],
                          usage=_usage(reply), chatbot=_about(reply))


async def _chat_chunks(ident: str, created: int, body: ChatCompletionRequest, first: str | None, tokens: AsyncIterator[str],
                       stream: ReplyStream, bot: Bot, state: AppState) -> AsyncIterator[str]:
    def chunk(choices: list[ChunkChoice], **extra: Any) -> str:
        return _event(ChatCompletionChunk(id=ident, object="chat.completion.chunk", created=created, model=body.model, choices=choices,
                                          system_fingerprint=system_fingerprint, **extra))

    def choice(delta: ChunkDelta, finish: str | None = None) -> list[ChunkChoice]:
        return [ChunkChoice(index=0, delta=delta, finish_reason=finish, logprobs=None)]

    system_fingerprint = fingerprint(bot)
    yield chunk(choice(ChunkDelta(role="assistant", content="")))
    if first:
        yield chunk(choice(ChunkDelta(content=first)))
    async for piece in tokens:
        yield chunk(choice(ChunkDelta(content=piece)))
    assert stream.reply is not None
    yield chunk(choice(ChunkDelta(), stream.reply.finish_reason), chatbot=_about(stream.reply))
    if body.stream_options and body.stream_options.include_usage:
        yield chunk([], usage=_usage(stream.reply))
    yield sse("[DONE]")


@endpoints.post("/completions", response_model=TextCompletion, responses=_streamed("text_completion"))
async def completions(body: CompletionRequest, bot: BotDep, state: StateDep, response: Response) -> Any:
    """The legacy call: the prompt as given (separator included) straight to one skill."""
    if body.model == BOT_MODEL:
        raise APIError(400, f"model '{BOT_MODEL}' routes chat messages: use /v1/chat/completions, or name a skill here", param="model")
    _check_model(bot, body.model)
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
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    headers = {SKILL_HEADER: skill.name}
    if body.stream:
        return StreamingResponse(guarded(_completion_chunks(ident, created, body, backend, requests, state, fingerprint(bot)), _error_event),
                                 media_type="text/event-stream",
                                 headers=headers)
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, prompt, req in requests:
        done = await in_thread(state.executor, lambda req=req: backend.complete(req))
        text = (prompt if body.echo else "") + done.text
        choices.append(TextChoice(index=index, text=text, logprobs=done.logprobs, finish_reason=done.finish_reason))
        prompt_tokens += done.prompt_tokens
        completion_tokens += done.completion_tokens
    response.headers.update(headers)
    return TextCompletion(id=ident, object="text_completion", created=created, model=body.model, system_fingerprint=fingerprint(bot),
                          choices=choices, usage=Usage.of(prompt_tokens, completion_tokens))


async def _completion_chunks(ident: str, created: int, body: CompletionRequest, backend: Backend, requests: list,
                             state: AppState, system_fingerprint: str) -> AsyncIterator[str]:
    def chunk(choices: list[TextChoice], **extra: Any) -> str:
        return _event(TextCompletionChunk(id=ident, object="text_completion", created=created, model=body.model,
                                          system_fingerprint=system_fingerprint, choices=choices, **extra))

    def choice(index: int, text: str, finish: str | None = None) -> list[TextChoice]:
        return [TextChoice(index=index, text=text, logprobs=None, finish_reason=finish)]

    prompt_tokens = completion_tokens = 0
    for index, prompt, req in requests:
        if body.echo:
            yield chunk(choice(index, prompt))
        done: list[Completion] = []
        async for piece in iterate_in_thread(state.executor, lambda req=req: _keeping(backend.stream(req), done)):
            yield chunk(choice(index, piece))
        yield chunk(choice(index, "", done[0].finish_reason))
        prompt_tokens, completion_tokens = prompt_tokens + done[0].prompt_tokens, completion_tokens + done[0].completion_tokens
    if body.stream_options and body.stream_options.include_usage:
        yield chunk([], usage=Usage.of(prompt_tokens, completion_tokens))
    yield sse("[DONE]")


def _keeping(stream: CompletionStream, done: list[Completion]) -> Iterator[str]:
    """The pieces of a backend's stream; its Completion put in *done* at the end."""
    done.append((yield from stream))

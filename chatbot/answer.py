"""Asking one skill: build its prompt, run it on a backend, parse the completion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatbot.backends.base import Backend, GenerationRequest, relay
from chatbot.registry import Registry, Skill
from chatbot.skills import Parsed, build_prompt


def skill_request(registry: Registry, skill: Skill, prompt: str, *, use_adapter: bool = True, **overrides: Any) -> GenerationRequest:
    """The request that runs *prompt* (already formatted) on *skill* with its generation settings."""
    settings = skill.generation.model_dump() | {"stop": list(skill.stop)}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    adapter = registry.adapter_path(skill) if use_adapter else None
    return GenerationRequest(prompt=prompt, base_model=skill.model_id, adapter=str(adapter) if adapter else None, skill=skill.name, **settings)


def ask(
    registry: Registry,
    name: str,
    text: str,
    backend: Backend,
    *,
    on_token: Callable[[str], None] | None = None,
    **overrides: Any,
) -> tuple[str, Parsed]:
    """Ask skill *name* about user *text*; returns the raw completion and what it means."""
    skill = registry.get(name)
    request = skill_request(registry, skill, build_prompt(text, skill.separator), **overrides)
    pieces: list[str] = []
    for piece in relay(backend.stream(request), pieces):
        if on_token:
            on_token(piece)
    completion = "".join(pieces)
    return completion, skill.skill_kind.parse(completion, request.stop, text if skill.ground_entities else None)

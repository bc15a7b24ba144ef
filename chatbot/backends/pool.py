"""Which backend runs a skill: one table from ``backend:`` in models.yaml to the class that runs it.

A pool makes each backend once and shares it: one local backend (one base model, many adapters)
for every local skill, one OpenAI client per server, key variable and API style.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

from chatbot.backends.base import Backend
from chatbot.errors import ChatbotError
from chatbot.registry import Skill

ENGINE_ENV = "CHATBOT_ENGINE"


def _local(_: Skill) -> Backend:
    """The batched engine; ``CHATBOT_ENGINE=reference``: the plain peft path, one request at a time;
    ``CHATBOT_ENGINE=llama-cpp``: the base's GGUF on llama.cpp, adapters switched per request."""
    engine = os.environ.get(ENGINE_ENV) or "batched"
    if engine not in ("batched", "reference", "llama-cpp"):
        raise ChatbotError(f"{ENGINE_ENV}={engine!r}: use batched (the default), llama-cpp or reference")
    if engine == "reference":
        from chatbot.backends.local import LocalBackend

        return LocalBackend()
    if engine == "llama-cpp":
        from chatbot.backends.llama_cpp_engine import LlamaCppBackend

        return LlamaCppBackend()
    from chatbot.backends.batched import BatchedBackend

    return BatchedBackend()


def _openai(skill: Skill) -> Backend:
    from chatbot.backends.hosted import OpenAIBackend

    return OpenAIBackend(base_url=skill.base_url, api_key_env=skill.api_key_env, api=skill.api)


FACTORIES: dict[str, tuple[Callable[[Skill], Backend], Callable[[Skill], str]]] = {
    "local": (_local, lambda s: "local"),
    "openai": (_openai, lambda s: f"openai|{s.base_url or ''}|{s.api_key_env}|{s.api}"),
}


class BackendPool:
    def __init__(self, given: Mapping[str, Backend] | None = None) -> None:
        """*given* backends, by kind (``{"local": …}``), are used instead of making new ones."""
        self._given = dict(given or {})
        self._made: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def for_skill(self, skill: Skill) -> Backend:
        if skill.backend in self._given:
            return self._given[skill.backend]
        make, key_of = FACTORIES[skill.backend]
        key = key_of(skill)
        with self._lock:
            if key not in self._made:
                self._made[key] = make(skill)
            return self._made[key]

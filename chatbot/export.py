"""Scale-out on vLLM: the same skills served by ``vllm serve --enable-lora``, our peft adapters unchanged.

:func:`vllm_plan` reads a registry and gives, for each base model its local skills use, the ``vllm
serve`` command that loads the base once with every adapter as a LoRA module (each named after its
skill), and the registry to run the bot with instead: each local skill becomes ``backend: openai``
against its base's server, asking for its module by name (or for the base, when it has no adapter).
Hosted skills, the router and the fallback stay as they are, so several ``chatbot serve`` replicas
on one PostgreSQL database can answer with the GPU server(s) behind them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.errors import ChatbotError
from chatbot.registry import Registry
from chatbot.runtime.base_models import base_origin

API_KEY_ENV = "VLLM_API_KEY"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts


@dataclass
class VllmServer:
    """One ``vllm serve``: a base model and the adapters of the skills on it."""

    base: str  # as vLLM finds it: the Hugging Face id, or a folder
    port: int
    adapters: dict[str, Path] = field(default_factory=dict)  # LoRA module name (the skill's) -> adapter folder
    max_lora_rank: int = 16

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, host: str = "0.0.0.0") -> str:
        parts = ["vllm", "serve", self.base, "--host", host, "--port", str(self.port), "--api-key", f"${API_KEY_ENV}"]
        if self.adapters:
            parts += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(min(len(self.adapters), 8)),
                      "--lora-modules", *(f"{name}={path}" for name, path in self.adapters.items())]
        return " ".join(shlex.quote(p) if not p.startswith("$") else f'"{p}"' for p in parts)


@dataclass
class VllmPlan:
    servers: list[VllmServer]
    registry: Registry  # the bot's registry with local skills served by the servers


def vllm_plan(registry: Registry, *, first_port: int = 8000, url_of: dict[str, str] | None = None) -> VllmPlan:
    """The vLLM servers for *registry*'s local skills (one per base, ports from *first_port*), and the
    registry that uses them; *url_of* maps a base (as in the registry) to a server URL other than
    ``http://127.0.0.1:PORT/v1`` (another host)."""
    if registry.path is None:
        raise ChatbotError("the registry has no file: adapters are found relative to it")
    folder = registry.path.parent
    servers: dict[str, VllmServer] = {}
    exported = registry.model_copy(deep=True)
    for name, skill in registry.skills.items():
        if skill.backend != "local":
            continue
        server = servers.setdefault(skill.base_model, VllmServer(base_origin(skill.base_model), first_port + len(servers)))
        if skill.adapter:
            adapter = (folder / skill.adapter).resolve()
            server.adapters[name] = adapter
            rank = _rank(adapter, name)
            server.max_lora_rank = max(server.max_lora_rank, next((r for r in LORA_RANKS if r >= rank), rank))
        url = (url_of or {}).get(skill.base_model, server.url)
        exported.skills[name] = skill.model_copy(update={
            "backend": "openai", "model": name if skill.adapter else server.base, "base_url": url, "api_key_env": API_KEY_ENV,
            "api": "completions", "adapter": None})
    if not servers:
        raise ChatbotError(f"{registry.path}: no local skill to serve on vLLM", hint="hosted skills already run on a server")
    return VllmPlan(list(servers.values()), exported)


def _rank(adapter: Path, name: str) -> int:
    """The LoRA rank of an adapter (vLLM's --max-lora-rank must be at least each adapter's)."""
    config = adapter / "adapter_config.json"
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["r"])
    except FileNotFoundError:
        raise ChatbotError(f"skill {name!r}: no adapter at {adapter}", hint=f"train it again: chatbot train {name} --force …") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ChatbotError(f"{config}: not a peft LoRA config ({exc})") from None

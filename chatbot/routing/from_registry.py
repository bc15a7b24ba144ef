"""The router of a bot, from its ``models.yaml``.

Each skill routes on its ``routing_examples``; a skill without them on up to
``router.examples_per_skill`` prompts of its training data (``training.data_file``), without the
separator, drawn with a fixed seed. ``router.out_of_scope`` and ``router.out_of_scope_file`` (text,
one message a line, or JSONL with a ``text`` field) are messages no skill should take.
Adding a skill re-uses the previous router of the same registry: only the new skill's texts are
embedded, and a fine-tuned encoder is kept.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from chatbot.data.io import load_examples, read_records
from chatbot.errors import ChatbotError
from chatbot.registry import Registry, Skill
from chatbot.routing.cache import default_cache_dir, digest
from chatbot.routing.encoder import ProgressCallback
from chatbot.routing.router import Router, RouterSettings

SEED = 0


def settings_for(registry: Registry) -> RouterSettings:
    """Router settings from ``router:`` in models.yaml; an encoder folder is relative to the registry."""
    config = registry.router
    folder = registry.resolve(os.path.expanduser(config.encoder))
    return RouterSettings(encoder=str(folder) if folder.is_dir() else config.encoder, threshold=config.threshold, ask=config.ask, margin=config.margin)


def message_of(prompt: str, separator: str) -> str:
    """The user's message in a training prompt: no separator, the last ``User:`` turn when there is history."""
    text = prompt[: -len(separator)] if separator and prompt.endswith(separator) else prompt
    if "\nUser: " in text:
        text = text.rsplit("\nUser: ", 1)[1]
    return text.strip()


def training_messages(registry: Registry, skill: Skill, which: str = "data_file") -> list[str]:
    """The distinct messages of a skill's training (or validation) file; ChatbotError when unreadable."""
    record = skill.training
    name = getattr(record, which, None) if record else None
    if not name:
        raise ChatbotError(f"skill {skill.name!r} has no routing_examples and no training data file in its record",
                           hint=f"add routing_examples to skills.{skill.name} in {registry.path}")
    path = registry.resolve(name)
    try:
        examples = load_examples(path)
    except ChatbotError as exc:
        raise ChatbotError(f"skill {skill.name!r}: its training data can't be read for routing: {exc.message}",
                           hint=f"restore {path} or add routing_examples to skills.{skill.name} in {registry.path}") from None
    seen: dict[str, None] = {}
    for example in examples:
        text = message_of(example.prompt, skill.separator)
        if text:
            seen.setdefault(text)
    return list(seen)


def skill_examples(registry: Registry, skill: Skill) -> list[str]:
    """The messages a skill routes on: its routing_examples, or prompts drawn from its training data."""
    if skill.routing_examples:
        return [t for t in skill.routing_examples if t.strip()]
    messages = training_messages(registry, skill)
    limit = registry.router.examples_per_skill
    if len(messages) > limit:
        keep = set(random.Random(f"{SEED}:{skill.name}").sample(range(len(messages)), limit))
        messages = [m for i, m in enumerate(messages) if i in keep]
    if not messages:
        raise ChatbotError(f"skill {skill.name!r}: no messages to route on", hint=f"add routing_examples to skills.{skill.name}")
    return messages


def out_of_scope_examples(registry: Registry) -> list[str]:
    """``router.out_of_scope`` plus the lines (or JSONL ``text`` fields) of ``router.out_of_scope_file``."""
    texts = list(registry.router.out_of_scope)
    if registry.router.out_of_scope_file:
        texts += read_messages(registry.resolve(registry.router.out_of_scope_file))
    return [t for t in texts if t.strip()]


def read_messages(path: Path) -> list[str]:
    """Messages of a text file (one a line) or of JSON lines with a ``text`` (or ``prompt``) field."""
    if not path.exists():
        raise ChatbotError(f"{path}: no such file", hint="fix router.out_of_scope_file in the registry")
    if path.suffix.lower() in (".jsonl", ".jsonlines", ".json"):
        out = []
        for record in read_records(path):
            value = record.values.get("text", record.values.get("prompt"))
            if not isinstance(value, str):
                raise ChatbotError(f"{path}:{record.line}: no `text` field", hint='write {"text": "..."} a line')
            out.append(value)
        return out
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def registry_examples(registry: Registry) -> dict[str, list[str]]:
    """The routing examples of each skill the router sends messages to (``routing: true``)."""
    routed = {name: skill for name, skill in registry.skills.items() if skill.routing}
    if not routed:
        raise ChatbotError(f"{registry.path}: no skills to route to", hint="train a skill with `chatbot train` first, or turn routing on "
                           "for one with `chatbot registry routing NAME on`")
    return {name: skill_examples(registry, skill) for name, skill in routed.items()}


def _index(cache_dir: Path, registry: Registry) -> Path:
    where = str(registry.path.resolve()) if registry.path else str(Path.cwd())
    return cache_dir / "routers" / f"latest-{digest(where)[:16]}.json"


def router_for_registry(registry: Registry, cache_dir: str | os.PathLike[str] | None = None,
                        on_progress: ProgressCallback | None = None) -> Router:
    """The bot's router: from the cache when the skills are unchanged, updated when skills were added or removed."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(registry.path)
    examples, oos, settings = registry_examples(registry), out_of_scope_examples(registry), settings_for(registry)
    router = Router.fit(examples, oos, settings, cache_dir=folder, on_progress=on_progress, previous=_previous(folder, registry))
    index = _index(folder, registry)
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": router.key}), encoding="utf-8")
    os.replace(tmp, index)
    return router


def _previous(folder: Path, registry: Registry) -> str | None:
    try:
        return json.loads(_index(folder, registry).read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError):
        return None

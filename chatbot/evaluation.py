"""Scoring a registered skill on held-out prompt/completion pairs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatbot.answer import skill_request
from chatbot.backends.base import Backend, complete_all
from chatbot.registry import Registry
from chatbot.files import file_sha256


def evaluate_skill(
    registry: Registry,
    name: str,
    data: str | os.PathLike[str],
    backend: Backend,
    *,
    baseline: bool = False,
    on_example: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Generate a completion for every prompt of *data* and score it against the reference.

    The scores sit at the top level of the result (``micro_f1``, ``accuracy``, …).
    Decoding is greedy (temperature 0) so that a score can be reproduced; the prompts are sent together,
    so the batched engine answers them as batches. With *baseline*, the
    untuned base model answers the same prompts too, and its scores go under ``baseline``.
    """
    from chatbot.data.io import load_examples

    skill = registry.get(name)
    examples = load_examples(data)
    references = [e.completion for e in examples]

    def run(use_adapter: bool) -> tuple[dict[str, Any], list[str]]:
        requests = [skill_request(registry, skill, e.prompt, use_adapter=use_adapter, temperature=0.0) for e in examples]
        predictions = [c.text for c in complete_all(backend, requests, on_example)]  # batched on the batched engine
        sources = [e.prompt for e in examples] if skill.ground_entities else None
        return skill.skill_kind.score(predictions, references, skill.stop, sources), predictions

    scores, predictions = run(True)
    result: dict[str, Any] = {
        "skill": name,
        "kind": skill.kind,
        "metric": skill.skill_kind.metric,
        "data_file": str(Path(data)),
        "data_sha256": file_sha256(data),
        **scores,
        "examples": [
            {"line": e.line, "prediction": p, "reference": e.completion} for e, p in zip(examples, predictions)
        ],
    }
    if baseline:
        result["baseline"] = run(False)[0]
    return result

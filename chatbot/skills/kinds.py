"""The one table of skill kinds: everything that differs between kinds lives in :data:`KINDS`.

A *skill* is a fine-tuned completion model plus its prompt format. Its kind says how a completion
is parsed, which metric scores it, how long an answer may be by default, and whether the answer
can be shown token by token. The registry, the trainer, the fine-tuning API and the CLI read the
kind names and the default from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.skills.formats import Parsed, parse_entities, parse_label, parse_text
from chatbot.skills.metrics import Metric, classify_metrics, extract_metrics, generate_metrics, qa_metrics


@dataclass(frozen=True)
class SkillKind:
    """Everything that differs between kinds of skill."""

    name: str
    description: str
    parse: Callable[[str, Sequence[str], str | None], Parsed]  # (completion, stop, source text)
    scorer: Metric  # (predictions, references, stop, sources) -> scores, the headline one included
    metric: str  # the headline key of what ``scorer`` returns
    default_max_tokens: int
    streams: bool  # the answer shown is the completion itself, so it can be shown token by token

    def score(self, predictions: Sequence[str], references: Sequence[str], stop: Sequence[str],
              sources: Sequence[str] | None = None) -> dict[str, Any]:
        return self.scorer(predictions, references, stop, sources)


KINDS: dict[str, SkillKind] = {kind.name: kind for kind in (
    SkillKind("qa", "answers questions directly from question/answer pairs", parse_text, qa_metrics, "token_f1", 64, True),
    SkillKind("classify", "puts the text in one of a few classes", parse_label, classify_metrics, "accuracy", 8, False),
    SkillKind("generate", "writes text from an instruction", parse_text, generate_metrics, "rougeL", 128, True),
    SkillKind("extract", "extracts typed entities, one `type:['a', 'b']` line each", parse_entities, extract_metrics, "micro_f1", 256, False),
)}
KIND_NAMES = tuple(KINDS)
DEFAULT_KIND = "generate"  # what a fine-tuning job makes when its metadata names no kind


def get_kind(name: str) -> SkillKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ChatbotError(f"unknown skill kind {name!r}", hint=f"use one of: {', '.join(KINDS)}") from None

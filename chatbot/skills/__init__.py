"""Skill kinds and the legacy fine-tuning format they share.

``formats``: building prompts and parsing completions; ``metrics``: one scoring function per kind;
``kinds``: the one table that ties a kind's parser, metric and defaults together.
"""

from chatbot.skills.formats import (
    DEFAULT_SEPARATOR,
    DEFAULT_STOP,
    NO_ENTITY,
    Parsed,
    build_prompt,
    format_completion,
    format_entities,
    parse_entities,
    parse_label,
    parse_text,
)
from chatbot.skills.kinds import DEFAULT_KIND, KIND_NAMES, KINDS, SkillKind, get_kind

__all__ = ["DEFAULT_KIND", "DEFAULT_SEPARATOR", "DEFAULT_STOP", "KINDS", "KIND_NAMES", "NO_ENTITY", "Parsed", "SkillKind", "build_prompt",
           "format_completion", "format_entities", "get_kind", "parse_entities", "parse_label", "parse_text"]

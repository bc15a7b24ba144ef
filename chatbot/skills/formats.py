"""The legacy fine-tuning format: how a prompt is built and how each kind's completion is parsed.

Every kind shares the conventions: the prompt ends with a fixed separator, the completion starts
with a space and ends with a stop sequence. What a completion means differs per kind: the text
itself (qa, generate), a label (classify) or typed entities (extract).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

DEFAULT_SEPARATOR = "\n\n###\n\n"
DEFAULT_STOP = " END"
NO_ENTITY = "no entity"


class Parsed(BaseModel):
    """What a completion means for a given kind."""

    text: str = Field(description="The answer as shown to the user.")
    label: str | None = Field(default=None, description="The class, for classify skills.")
    entities: dict[str, list[str]] = Field(
        default_factory=dict, description="Entity type to values, for extract skills."
    )


def build_prompt(text: str, separator: str = DEFAULT_SEPARATOR, history: Sequence[tuple[str, str]] = ()) -> str:
    """The prompt for user *text*: earlier (user, reply) turns if any, the text, then the separator."""
    lines = [f"User: {u.strip()}\nAssistant: {a.strip()}" for u, a in history]
    body = text.strip()
    if lines:
        body = "\n".join(lines) + f"\nUser: {body}"
    return body + separator


def format_completion(answer: str, stop: str = DEFAULT_STOP) -> str:
    """A training completion: a leading space, the answer, the stop sequence."""
    return " " + answer.strip() + stop


def _strip(completion: str, stop: Sequence[str]) -> str:
    for s in stop:
        if s and s in completion:
            completion = completion.split(s, 1)[0]
    return completion.strip()


def parse_text(completion: str, stop: Sequence[str] = (DEFAULT_STOP,), source: str | None = None) -> Parsed:
    return Parsed(text=_strip(completion, stop))


def parse_label(completion: str, stop: Sequence[str] = (DEFAULT_STOP,), source: str | None = None) -> Parsed:
    text = _strip(completion, stop)
    label = text.splitlines()[0].strip() if text else ""
    return Parsed(text=label, label=label)


_ENTITY_LINE = re.compile(r"^\s*([A-Za-z_][\w ]*?)\s*:\s*(\[.*)$")


def _parse_values(raw: str) -> list[str]:
    """The values of ``['a', 'b']``; tolerant of a list cut short by max_tokens."""
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
    except (ValueError, SyntaxError):
        pass
    return [v.strip() for v in re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", raw) for v in v if v.strip()]


def _letters(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def parse_entities(completion: str, stop: Sequence[str] = (DEFAULT_STOP,), source: str | None = None) -> Parsed:
    """Entities in the tutorial's line format: ``type:['a', 'b']`` a line, `` no entity`` for none.

    With *source* (the text the entities were extracted from), values that do not occur in it are
    dropped, comparing letters and digits only (``'3 - 5 years'`` occurs in ``3-5 years``): a model
    can only extract what is there, so anything else is a hallucination. Repeated values count once.
    """
    text = _strip(completion, stop)
    grounding = _letters(source) if source is not None else None
    entities: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _ENTITY_LINE.match(line)
        if not match:
            continue
        values = _parse_values(match.group(2))
        if grounding is not None:
            values = [v for v in dict.fromkeys(values) if _letters(v) and _letters(v) in grounding]
        if values:
            entities.setdefault(match.group(1).strip().lower(), []).extend(values)
    shown = "\n".join(f"{k}: {', '.join(v)}" for k, v in entities.items()) or NO_ENTITY
    return Parsed(text=shown, entities=entities)


def format_entities(entities: dict[str, list[str]]) -> str:
    """The tutorial's completion body for *entities* (without leading space or stop)."""
    if not any(entities.values()):
        return NO_ENTITY
    return "\n".join(f"{k}:{list(vals)!r}" for k, vals in entities.items() if vals)

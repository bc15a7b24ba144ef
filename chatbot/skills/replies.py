"""Replies a person would accept from label and entity skills: a template filled from the slots, and questions for missing ones.

A skill may declare ``reply`` (e.g. ``"Booked: your {bike} for {service} on {day}."``) and
``ask_for`` (entity type → the question asked when the session has no value for it yet), as Rasa's
responses and forms do. Placeholders are entity types, ``{label}`` (a classify skill's label) and
``{text}`` (the parsed answer as the skill would show it); several values of one type are joined with
"and"; a placeholder with no value is left empty.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from chatbot.errors import ChatbotError


def placeholders(template: str) -> list[str]:
    """The names in *template*; ChatbotError when it is not a valid template."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise ChatbotError(f"reply template {template!r}: {exc}", hint="write placeholders as {type}; double a brace to show one: {{") from None


def _joined(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1] if values else ""


def render(template: str, slots: Mapping[str, list[str]], *, label: str | None = None, text: str = "") -> str:
    """*template* filled from the session's *slots*, the *label* and the skill's own *text*."""
    values = {name: _joined(list(slots.get(name, []))) for name in placeholders(template)}
    values |= {key: value for key, value in (("label", label or ""), ("text", text)) if key in values and not slots.get(key)}
    return template.format_map(values).strip()


def missing(ask_for: Mapping[str, str], slots: Mapping[str, list[str]]) -> str | None:
    """The first entity type of *ask_for* that *slots* holds no value for."""
    return next((kind for kind in ask_for if not slots.get(kind)), None)

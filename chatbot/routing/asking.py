"""When the router is unsure: the question the bot asks, and which skill the user's next message chooses.

The router marks a route unsure (``Route.ask``: the two best skills) when the best skill leads the
second, or the threshold, by less than the calibrated margin (``calibration.py``). In a session the
bot then asks, e.g. "Do you want to book a repair or ask about the shop?", and the next message
chooses: by number or order ("1", "the second"), by naming the skill or what it does ("book a
repair", "booking-extract"), or, when it is short, by being routed to one of the two. Anything else
is a new message.
"""

from __future__ import annotations

import re

from chatbot.registry import Registry, Skill
from chatbot.routing.router import Router

SHORT_ANSWER_WORDS = 5
_ORDINALS = ({"1", "one", "first", "the first", "the first one", "former", "the former", "a"},
             {"2", "two", "second", "the second", "the second one", "latter", "the latter", "b"})


def offer(skill: Skill) -> str:
    """How the bot names *skill* in its question: ``ask_as``, else its description up to a colon, else its name."""
    if skill.ask_as:
        return skill.ask_as.strip()
    return (skill.description.split(":")[0].strip() or skill.name).rstrip(".")


def question(registry: Registry, options: list[str]) -> str:
    """The question that lets the user choose between *options* (two skills)."""
    first, second = (registry.get(name) for name in options[:2])
    if first.ask_as and second.ask_as:
        return f"Do you want to {offer(first)} or {offer(second)}?"
    return f"Do you mean 1) {offer(first)}, or 2) {offer(second)}?"


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def chosen(text: str, options: list[str], registry: Registry, router: Router) -> str | None:
    """The option the user's *text* picks, or None when it is not an answer to the question."""
    said = _words(text)
    for position, names in enumerate(_ORDINALS[: len(options)]):
        if said in names:
            return options[position]
    named = [name for name in options if _words(name) in said or (registry.get(name).ask_as and _words(offer(registry.get(name))) in said)]
    if len(named) == 1:
        return named[0]
    if len(said.split()) > SHORT_ANSWER_WORDS:  # a whole new request, not an answer
        return None
    route = router.route(text)
    if route.in_scope and route.skill in options and not route.ask:
        return route.skill
    return None

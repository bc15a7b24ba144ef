"""``chatbot ask``: one skill, one answer, streamed."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from chatbot.cli.common import REGISTRY_HELP, console, decode_escapes, handle_errors


@handle_errors
def ask(
    name: Annotated[str, typer.Argument(help="the skill to ask")],
    text: Annotated[str, typer.Argument(help="the user's message")],
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="longest answer in tokens")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0, help="0 answers greedily")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help="nucleus sampling mass")] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="stop sequence (repeatable; default: the skill's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
) -> None:
    """Ask one skill: the prompt gets its separator, generation stops at its stop sequence.

    Example: chatbot ask review-sentiment "the battery died after a day"
    """
    from chatbot import registry as registry_io
    from chatbot.answer import ask as ask_skill
    from chatbot.backends.pool import BackendPool

    reg = registry_io.load(registry)
    skill = reg.get(name)
    stops = [decode_escapes(s, "--stop") for s in stop] if stop else None
    on_token = None if as_json else (lambda piece: console.out(piece, end="", highlight=False))
    completion, parsed = ask_skill(reg, name, text, BackendPool().for_skill(skill), on_token=on_token,
                                   max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stops)
    if as_json:
        console.out(json.dumps({"skill": name, "completion": completion} | parsed.model_dump(), ensure_ascii=False))
        return
    console.out("")
    if parsed.label is not None:
        console.print(f"[bold]label:[/] {parsed.label}")
    for kind, values in parsed.entities.items():
        console.print(f"[bold]{kind}:[/] {', '.join(values)}", highlight=False)

"""``chatbot registry list|show|remove``."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from chatbot import registry as registry_io
from chatbot.cli.common import REGISTRY_HELP, console, handle_errors
from chatbot.errors import ChatbotError

app = typer.Typer(help="List, show and remove registered skills; turn their routing on or off.\n\nExample: chatbot registry list", no_args_is_help=True)
RegistryOption = Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)]


@app.command("list")
@handle_errors
def list_skills(registry: RegistryOption = None) -> None:
    """List the skills of the registry.

    Example: chatbot registry list --registry models.yaml
    """
    reg = registry_io.load(registry)
    table = Table(title=f"skills in {escape(str(reg.path))}")
    for column in ("name", "kind", "backend", "base model", "adapter", "trained", "metric", "score"):
        table.add_column(column, no_wrap=column in ("name", "kind", "score"))
    for skill in reg.skills.values():
        record = skill.training
        metric = skill.skill_kind.metric
        score = record.metrics.get(metric) if record else None
        table.add_row(*map(escape, [  # the file's text, not markup: a base model named "[/]" is no tag
            skill.name, skill.kind, skill.backend, skill.base_model, skill.adapter or "-",
            record.trained_at.strftime("%Y-%m-%d") if record else "-",
            metric, f"{score:.3f}" if isinstance(score, float) else "-",
        ]))
    console.print(table)


@app.command("show")
@handle_errors
def show(name: str, registry: RegistryOption = None) -> None:
    """Show everything registered for one skill.

    Example: chatbot registry show booking-extract
    """
    skill = registry_io.load(registry).get(name)
    console.print(yaml.dump(skill.model_dump(mode="json", exclude_none=True), Dumper=registry_io._Dumper, sort_keys=False, allow_unicode=True), highlight=False, markup=False)


@app.command("remove")
@handle_errors
def remove(name: str, registry: RegistryOption = None) -> None:
    """Remove a skill from the registry (its adapter folder is left on disk).

    Example: chatbot registry remove booking-extract
    """
    reg = registry_io.load(registry)
    skill = registry_io.remove(name, reg.path)
    kept = f"; its adapter stays in {reg.adapter_path(skill)}" if skill.adapter else ""
    console.print(f"removed {name} from {reg.path}{kept}")


@app.command("routing")
@handle_errors
def routing(name: str, state: Annotated[str, typer.Argument(help="on: the router sends messages to it; off: it answers only when asked by name")],
            registry: RegistryOption = None) -> None:
    """Turn routing on or off for a skill (a fine-tuning job's model starts with it off).

    A running server picks the change up when its next job ends or at its next start.

    Example: chatbot registry routing ft-smollm2-135m-mood-a1b2c3 on
    """
    if state not in ("on", "off"):
        raise ChatbotError(f"{state!r}: say on or off", hint=f"chatbot registry routing {name} on")
    with registry_io.editing(registry, missing_ok=False) as reg:
        reg.get(name).routing = state == "on"
    console.print(f"routing {state} for {name} in {reg.path}")

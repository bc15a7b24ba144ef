"""``chatbot registry list|show|remove``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from chatbot import registry as registry_io
from chatbot.cli.common import REGISTRY_HELP, UsageError, console, handle_errors, print_json

app = typer.Typer(help="List, show and remove registered skills; turn their routing on or off.\n\nExample: chatbot registry list", no_args_is_help=True)
RegistryOption = Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@app.command("list")
@handle_errors
def list_skills(registry: RegistryOption = None, as_json: JsonOption = False) -> None:
    """List the skills of the registry.

    --json prints a list of objects: name, kind, description, backend, base_model, model, adapter,
    routing, trained_at, metric and score (null when not trained or not evaluated).

    Example: chatbot registry list --registry models.yaml
    """
    reg = registry_io.load(registry)
    rows = [_summary(skill) for skill in reg.skills.values()]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"skills in {escape(str(reg.path))}")
    for column in ("name", "kind", "backend", "base model", "adapter", "trained", "metric", "score"):
        table.add_column(column, no_wrap=column in ("name", "kind", "score"))
    for row in rows:
        score = row["score"]
        table.add_row(*map(escape, [  # the file's text, not markup: a base model named "[/]" is no tag
            row["name"], row["kind"], row["backend"], row["base_model"], row["adapter"] or "-", (row["trained_at"] or "-")[:10],
            row["metric"], f"{score:.3f}" if isinstance(score, float) else "-",
        ]))
    console.print(table)


def _summary(skill: registry_io.Skill) -> dict[str, Any]:
    record = skill.training
    metric = skill.skill_kind.metric
    score = record.metrics.get(metric) if record else None
    return {
        "name": skill.name, "kind": skill.kind, "description": skill.description, "backend": skill.backend,
        "base_model": skill.base_model, "model": skill.model, "adapter": skill.adapter, "routing": skill.routing,
        "trained_at": record.trained_at.isoformat() if record else None, "metric": metric,
        "score": float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
    }


@app.command("show")
@handle_errors
def show(name: str, registry: RegistryOption = None, as_json: JsonOption = False) -> None:
    """Show everything registered for one skill (as in models.yaml; --json: as JSON).

    Example: chatbot registry show booking-extract
    """
    skill = registry_io.load(registry).get(name)
    data = skill.model_dump(mode="json", exclude_none=True)
    if as_json:
        print_json(data)
        return
    console.print(yaml.dump(data, Dumper=registry_io._Dumper, sort_keys=False, allow_unicode=True), highlight=False, markup=False)


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
        raise UsageError(f"{state!r}: say on or off", hint=f"chatbot registry routing {name} on")
    with registry_io.editing(registry, missing_ok=False) as reg:
        reg.get(name).routing = state == "on"
    console.print(f"routing {state} for {name} in {reg.path}")


@app.command("checkpoint")
@handle_errors
def checkpoint(
    name: Annotated[str, typer.Argument(help="the trained skill")],
    epoch: Annotated[int, typer.Argument(help="a kept epoch (see `chatbot registry show NAME`)")],
    new_name: Annotated[str, typer.Option("--as", help="the name of the new skill")],
    force: Annotated[bool, typer.Option("--force", help="replace a skill of that name")] = False,
    registry: RegistryOption = None,
) -> None:
    """Register a kept checkpoint (an epoch of a training) as a skill of its own.

    Training with --valid keeps the adapters of the best and the last epochs; this makes one of them a
    skill, with the settings of NAME, answering by name (turn its routing on to let the router use it).

    Example: chatbot registry checkpoint product-writer 10 --as product-writer-e10
    """
    from chatbot.training.skill import register_checkpoint

    skill = register_checkpoint(name, epoch, new_name, registry, force=force)
    console.print(f"registered {skill.name}: epoch {epoch} of {name} ({skill.adapter})")

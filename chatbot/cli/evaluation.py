"""``chatbot eval``: score a skill on held-out data with the metric that fits its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from chatbot.cli.common import REGISTRY_HELP, console, err_console, handle_errors, need_file, print_json


def _flat(scores: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in scores.items() if isinstance(v, (int, float)) and k != "n"}


def _table(result: dict[str, Any]) -> Table:
    table = Table(title=f"{result['skill']} ({result['kind']}) on {result['data_file']}, {result['n']} examples")
    table.add_column("metric")
    table.add_column("fine-tuned", justify="right")
    baseline = result.get("baseline")
    if baseline:
        table.add_column("untuned base", justify="right")
    for key, value in _flat(result).items():
        row = [key + (" ★" if key == result["metric"] else ""), f"{value:.4f}"]
        if baseline:
            row.append(f"{baseline.get(key, float('nan')):.4f}")
        table.add_row(*row)
    return table


def _details(result: dict[str, Any]) -> Table | None:
    rows = result.get("per_class") or result.get("per_type")
    if not rows:
        return None
    table = Table(title="per class" if "per_class" in result else "per entity type")
    for column in ("name", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for name, row in rows.items():
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    return table


@handle_errors
def evaluate(
    name: Annotated[str, typer.Argument(help="the skill to evaluate")],
    data: Annotated[Path, typer.Option("--data", help="held-out JSONL prompt/completion file")],
    baseline: Annotated[bool, typer.Option("--baseline", help="also score the untuned base model")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
) -> None:
    """Evaluate a skill: accuracy/F1 (classify), entity micro-F1 (extract), exact match/token F1 (qa), ROUGE-L/BLEU (generate).

    The scores are also stored in the skill's training record in models.yaml.

    Example: chatbot eval booking-extract --data training_data/booking_extract_valid.jsonl --baseline
    """
    from chatbot import registry as registry_io
    from chatbot.backends.pool import BackendPool
    from chatbot.data.io import load_examples
    from chatbot.evaluation import evaluate_skill

    need_file(data, "--data")
    reg = registry_io.load(registry)
    skill = reg.get(name)
    total = len(load_examples(data)) * (2 if baseline else 1)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=as_json) as progress:
        task = progress.add_task(f"evaluating {name}", total=total)
        result = evaluate_skill(reg, name, data, BackendPool().for_skill(skill), baseline=baseline,
                                on_example=lambda: progress.advance(task))
    if skill.training is not None:
        with registry_io.editing(reg.path, missing_ok=False) as reg:  # read again: never overwrite a change made meanwhile
            record = reg.get(name).training
            assert record is not None
            record.metrics = {"data_file": result["data_file"], "data_sha256": result["data_sha256"]} | _flat(result)
            if baseline:
                record.metrics["baseline"] = _flat(result["baseline"])
            folder = reg.adapter_path(reg.get(name))
            if folder is not None and (folder / "adapter_config.json").exists():  # the model card shows the metrics too
                from chatbot.training.model_card import write_model_card

                write_model_card(folder, reg.get(name))
    if as_json:
        print_json(result)
        return
    console.print(_table(result))
    details = _details(result)
    if details:
        console.print(details)

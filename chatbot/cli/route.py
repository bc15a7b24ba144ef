"""``chatbot route TEXT`` and ``chatbot route eval``: which skill takes a message, and how well routing works.

``route`` is a command group whose default command is ``message``: ``chatbot route TEXT`` is
``chatbot route message TEXT`` (write that form to route a message that is literally "eval").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from chatbot.cli.common import REGISTRY_HELP, UsageError, console, err_console, handle_errors, need_file, print_json, progress_bars

DEFAULT_COMMAND = "message"


class _DefaultGroup(TyperGroup):
    """Runs ``message`` when the first argument is not a command name (``chatbot route TEXT``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="route",
    cls=_DefaultGroup,
    help="Which skill takes a message (`chatbot route TEXT`, short for `chatbot route message TEXT`), and how well the router does (`chatbot route eval`).\n\n"
         "Example: chatbot route \"do you fix e-bikes?\" --registry models.yaml",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

RegistryOption = Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
CacheOption = Annotated[Path | None, typer.Option("--cache-dir", help="embedding and router cache (default: $CHATBOT_CACHE/routing, else .chatbot/cache next to the registry)")]


@app.command(DEFAULT_COMMAND)
@handle_errors
def message(
    text: Annotated[str, typer.Argument(help="the user's message")],
    registry: RegistryOption = None,
    as_json: JsonOption = False,
    cache_dir: CacheOption = None,
) -> None:
    """Route one message (the default command): the skill, its score, the threshold and the runners-up.

    The router is built from the registry's skills on first use and cached; later calls load it. `chatbot route TEXT` is short for `chatbot route message TEXT`.

    Example: chatbot route "can I book a brake tune on friday?"
    """
    from chatbot import registry as registry_io
    from chatbot.routing.from_registry import router_for_registry

    if not text.strip():
        raise UsageError("the message is empty", hint='chatbot route "your message"')
    reg = registry_io.load(registry)
    with progress_bars() as on_progress:
        router = router_for_registry(reg, cache_dir=cache_dir, on_progress=on_progress)
    route = router.route(text)
    if as_json:
        console.out(json.dumps(route.model_dump(), ensure_ascii=False))
        return
    table = Table(title=f"routing {text!r}", show_header=True)
    for column in ("", "skill", "score"):
        table.add_column(column, justify="right" if column == "score" else "left")
    table.add_row("→", route.skill or "[yellow]out of scope[/] (fallback)", f"{route.score:.3f}")
    for candidate in route.runners_up:
        table.add_row("", candidate.skill, f"{candidate.score:.3f}")
    console.print(table)
    console.print(f"threshold {route.threshold:.3f} ({router.calibration.method}); "
                  + ("in scope" if route.in_scope else "best score below it: out of scope"), highlight=False)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _report_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"routing: trained on {report['train']}, tested on {report['test']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("in-scope accuracy ★", report["in_scope_accuracy"]), ("out-of-scope recall", report["oos_recall"]),
        ("out-of-scope precision", report["oos_precision"]), ("macro-F1 (skills + oos)", report["macro_f1"]),
        ("asks the user to choose (in a session)", report["ask_rate"]), ("asking was right (the best was wrong)", report["ask_right"]),
        ("asking offered the right skill", report["ask_offers_right"]),
        ("margin for asking", f"{report['calibration']['margin']:.4f} (held out: asks {_share(report['calibration']['ask_rate'])}, "
                              f"right {_share(report['calibration']['ask_right'])})"),
        ("latency p50 / p95 (ms)", f"{report['latency_ms_p50']:.1f} / {report['latency_ms_p95']:.1f}"),
        ("threshold", f"{report['threshold']:.4f} ({report['calibration']['method']}, {report['calibration']['held_out']})"),
        ("encoder", "fine-tuned on the examples" if report["finetuned"] else "as shipped"),
        ("training examples / out-of-scope", f"{report['train_examples']} / {report['train_out_of_scope']} ({report['skills']} skills)"),
        ("test in-scope / out-of-scope", f"{report['test_in_scope']} / {report['test_out_of_scope']}"),
        ("fit time (s)", f"{report['fit_seconds']:.1f}" + (" (cached)" if report["from_cache"] else "")),
    ]
    for name, value in rows:
        table.add_row(name, "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


@app.command("eval")
@handle_errors
def evaluate(
    train: Annotated[Path | None, typer.Option("--train", help='JSONL of {"text", "label"} to fit the router on (label "oos": out of scope)')] = None,
    test: Annotated[Path | None, typer.Option("--test", help="JSONL of the same form to report on")] = None,
    registry: RegistryOption = None,
    finetune: Annotated[str, typer.Option("--finetune", help="fine-tune the encoder: auto (from 1,000 examples), always or never")] = "auto",
    threshold: Annotated[float | None, typer.Option("--threshold", help="fixed out-of-scope threshold instead of the calibrated one")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="seed of the calibration split and the encoder's fine-tuning (default: "
                                             "the router's, 0): vary it to see how steady the figures are")] = None,
    as_json: JsonOption = False,
    cache_dir: CacheOption = None,
) -> None:
    """Measure routing: in-scope accuracy, out-of-scope recall/precision, macro-F1, latency.

    With --train and --test, fits on one file and reports on the other. Without them, evaluates the bot's own router on messages held out from its skills (validation prompts, else a seeded 20%).

    Example: chatbot route eval --train clinc150/train.jsonl --test clinc150/validation.jsonl
    """
    from chatbot import registry as registry_io
    from chatbot.routing.accuracy import evaluate_files, evaluate_registry
    from chatbot.routing.router import RouterSettings

    if finetune not in ("auto", "always", "never"):
        raise UsageError(f"--finetune {finetune!r}: use auto, always or never")
    if (train is None) != (test is None):
        raise UsageError("give both --train and --test, or neither (to evaluate the registry's router)")
    need_file(train, "--train")
    need_file(test, "--test")
    if train is not None and test is not None:
        settings = RouterSettings(finetune=finetune, threshold=threshold, seed=seed or 0)  # type: ignore[arg-type]
        with progress_bars() as on_progress:
            report = evaluate_files(train, test, settings, cache_dir=cache_dir, on_progress=on_progress)
    else:
        reg = registry_io.load(registry)
        if threshold is not None:
            reg.router.threshold = threshold
        with progress_bars() as on_progress:
            report = evaluate_registry(reg, cache_dir=cache_dir, finetune=finetune, seed=seed, on_progress=on_progress)
    data = report.model_dump()
    if as_json:
        print_json(data)
        return
    console.print(_report_table(data))
    err_console.print(f"calibration on held-out training data: {report.calibration.model_dump(exclude={'method', 'threshold'})}",
                      highlight=False, style="dim")

"""``chatbot data``: check, fix, template and split fine-tuning data."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm
from rich.table import Table

from chatbot.data.check import Report, TokenCounter, check_file, plural, show
from chatbot.data.fix import FixResult, fix_file
from chatbot.data.io import describe, read_file
from chatbot.data.split import can_stratify, split_file, stratify_labels
from chatbot.data.template import render_table
from chatbot.cli.common import decode_escapes, handle_errors, need_file
from chatbot.errors import ChatbotError
from chatbot.skills import DEFAULT_SEPARATOR, DEFAULT_STOP
from chatbot.runtime.base_models import DEFAULT_BASE

app = typer.Typer(
    name="data",
    help="Check, fix, build and split fine-tuning data (JSONL prompt/completion pairs).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def token_counter(base: str | None) -> tuple[TokenCounter | None, int | None]:
    """The base model's token counter and context length, or (None, None) for the approximation."""
    if base is None:
        return None, None
    try:
        from chatbot.runtime.base_models import token_counter as load_counter

        return load_counter(base)
    except ImportError as exc:
        message = f"--base {base}: cannot load its tokenizer ({exc})"
        raise ChatbotError(message, hint="pass --approximate to count characters / 4 instead") from None


def _lines(lines: list[int], count: int) -> str:
    shown = ", ".join(map(str, lines[:6]))
    return shown + (f" (+{count - 6})" if count > 6 else "")


def print_report(report: Report, console: Console) -> None:
    """The report as a few summary lines and a table of findings."""
    console.print(f"[bold]{escape(report.path)}[/bold]: {report.rows} rows, task type [cyan]{report.task_type}[/cyan]")
    if report.read_as:
        console.print(f"[cyan]{escape(report.read_as)}[/cyan]")
    if report.task_type != "unknown":
        separator = show(report.separator) if report.separator else "none"
        stop = show(report.stop) if report.stop else "none"
        console.print(f"separator: {escape(separator)}   stop: {escape(stop)}")
    if report.label_counts:
        counts = report.label_counts
        big, small = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
        console.print(
            f"{len(counts)} classes, largest {escape(show(big))} ({counts[big]}), "
            f"smallest {escape(show(small))} ({counts[small]})"
        )
    if report.findings:
        table = Table("severity", "lines", "finding", show_lines=False, expand=True)
        for f in report.findings:
            severity = f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]"
            table.add_row(severity, _lines(f.lines, f.count), escape(f"{f.message} [{f.code}]"))
        console.print(table)
    errors = sum(f.severity == "error" for f in report.findings)
    warnings = sum(f.severity == "warning" for f in report.findings)
    if errors:
        console.print(
            f"[bold red]✗ cannot be used as is[/]: {plural(errors, 'error')}; "
            "fix them, e.g. `chatbot data fix FILE -o OUT.jsonl`"
        )
    elif warnings:
        console.print(
            f"[green]✓ usable as is[/]; {plural(warnings, 'warning')} "
            "(`chatbot data fix FILE -o OUT.jsonl` applies the recommended fixes)"
        )
    else:
        console.print("[green]✓ usable as is[/]")


@app.command()
@handle_errors
def check(
    file: Annotated[Path, typer.Argument(help="Data file: .jsonl, .json, .csv, .tsv, .xlsx or .txt (the content decides where the extension misleads).")],
    valid: Annotated[
        Path | None, typer.Option("--valid", help="Validation file: also report its prompts that occur in FILE.")
    ] = None,
    base: Annotated[
        str, typer.Option("--base", help="Base model: count tokens with its tokenizer, limit to its context.")
    ] = DEFAULT_BASE,
    approximate: Annotated[
        bool, typer.Option("--approximate", help="Count tokens as characters / 4 instead of loading a tokenizer.")
    ] = False,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, help="Longest example \\[default: 2048, or the base model's context]."),
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Skill kind (qa, classify, generate, extract), not the guessed task.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the report, as JSON.")] = False,
) -> None:
    """Check fine-tuning data and say what to fix. Writes nothing.

    Exit status 0 when the file can be used as is, 1 when it cannot, 2 on a usage error.

    Example: chatbot data check train.jsonl --valid valid.jsonl --base smollm2-135m
    """
    need_file(file), need_file(valid, "--valid")  # a missing file named on the command line is a usage error
    count, context = token_counter(None if approximate else base)
    limit = max_tokens or context or 2048
    report = check_file(file, valid_path=valid, count_tokens=count, max_tokens=limit, kind=kind)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_report(report, Console(highlight=False, soft_wrap=True))
    raise typer.Exit(0 if report.ok else 1)


def acceptor(yes: bool, console: Console, declined: list[str]) -> Callable[[str, str], bool]:
    """Accept every fix (--yes), ask on a terminal, or decline (recording it) when there is none."""

    def accept(name: str, description: str) -> bool:
        if yes:
            return True
        if sys.stdin.isatty():
            return Confirm.ask(f"[bold][Recommended][/bold] {escape(description)}?", default=True, console=console)
        declined.append(name)
        return False

    return accept


def print_fix(result: FixResult, console: Console, declined: list[str]) -> None:
    if result.read_as:
        console.print(f"[cyan]{escape(result.read_as)}[/cyan]")
    console.print(f"read {result.rows_before} rows, wrote {result.rows_after}: {', '.join(result.outputs)}")
    for line in result.applied:
        console.print(f"  [green]applied[/green] {escape(line)}")
    for line in result.skipped:
        console.print(f"  [yellow]skipped[/yellow] {escape(line)}")
    if declined:
        fixes = plural(len(declined), "recommended fix", "recommended fixes")
        console.print(
            f"[yellow]no terminal to ask on and no --yes: {fixes} not applied[/]; rerun with --yes to apply them"
        )
    if result.separator:
        console.print(f"at inference, end prompts with {escape(show(result.separator))}", highlight=False)
    if result.stop:
        console.print(f"completions end with the stop sequence {escape(show(result.stop))}", highlight=False)
    console.print(f"next: chatbot data check {escape(result.outputs[0])}")


@app.command()
@handle_errors
def fix(
    file: Annotated[Path, typer.Argument(help="Data file: .jsonl, .json, .csv, .tsv, .xlsx or .txt. Never modified.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The fixed JSONL file to write.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply every recommended fix without asking.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT (and its split files) if they exist.")] = False,
    separator: Annotated[
        str, typer.Option("--separator", help=r"Separator to append to prompts lacking one (\n allowed).")
    ] = DEFAULT_SEPARATOR.encode("unicode_escape").decode(),
    stop: Annotated[
        str, typer.Option("--stop", help=r"Stop sequence to append to completions lacking one (\n allowed).")
    ] = DEFAULT_STOP,
    base: Annotated[str, typer.Option("--base", help="Base model whose tokenizer counts tokens.")] = DEFAULT_BASE,
    approximate: Annotated[
        bool, typer.Option("--approximate", help="Count tokens as characters / 4 instead of loading a tokenizer.")
    ] = False,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Drop longer examples \\[default: 2048].")
    ] = None,
) -> None:
    """Write a fixed copy of fine-tuning data: necessary fixes always, recommended ones if you agree.

    Asks about each recommended fix on a terminal; --yes accepts them all.

    Classification data can also be split into OUT_train.jsonl and OUT_valid.jsonl.

    Example: chatbot data fix tickets.csv -o tickets.jsonl --yes
    """
    console = Console(highlight=False, soft_wrap=True)
    count, context = token_counter(None if approximate else base)
    declined: list[str] = []
    result = fix_file(
        file,
        out,
        accept=acceptor(yes, console, declined),
        separator=decode_escapes(separator, "--separator"),
        stop=decode_escapes(stop, "--stop"),
        count_tokens=count,
        max_tokens=max_tokens or context or 2048,
        force=force,
    )
    print_fix(result, console, declined)


@app.command()
@handle_errors
def template(
    table: Annotated[Path, typer.Argument(help="Table of inputs: .csv, .tsv, .xlsx, .json or .jsonl.")],
    template_text: Annotated[
        str, typer.Option("--template", "-t", help=r"Prompt text with {column} placeholders (\n allowed).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The JSONL file to write.")],
    explode: Annotated[
        str | None, typer.Option("--explode", help="Column holding lists: one prompt per item.")
    ] = None,
    completion: Annotated[
        str | None, typer.Option("--completion", help="Column holding the completions \\[default: left empty].")
    ] = None,
    separator: Annotated[
        str, typer.Option("--separator", help="Separator appended to each prompt.")
    ] = DEFAULT_SEPARATOR.encode("unicode_escape").decode(),
    stop: Annotated[str, typer.Option("--stop", help="Stop sequence ending each completion.")] = DEFAULT_STOP,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Build prompts from a table, one per row, with a {column} template.

    Example: chatbot data template products.csv -o prompts.jsonl --explode detail
    -t "Write a description of {name}, mention {type} and {detail}"
    """
    rows = render_table(
        table,
        decode_escapes(template_text, "--template"),
        out=out,
        explode=explode,
        completion=completion,
        separator=decode_escapes(separator, "--separator"),
        stop=decode_escapes(stop, "--stop"),
        force=force,
    )
    console = Console(highlight=False, soft_wrap=True)
    note = describe(table)
    if note:
        console.print(f"[cyan]{escape(note)}[/cyan]")
    console.print(f"wrote {rows} prompts to {escape(str(out))}")
    if completion is None:
        console.print(f"completions are empty: write them, then run `chatbot data check {escape(str(out))}`")


@app.command()
@handle_errors
def split(
    file: Annotated[Path, typer.Argument(help="Data file: prompt/completion or text/label rows.")],
    valid: Annotated[float, typer.Option("--valid", help="Fraction of rows for validation.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same split.")] = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Folder for the two files \\[default: FILE's].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output files if they exist.")] = False,
) -> None:
    """Split data into FILE_train.jsonl and FILE_valid.jsonl, stratified by class for classification.

    Example: chatbot data split train.jsonl --valid 0.2 --seed 1
    """
    train_path, valid_path = split_file(file, valid=valid, seed=seed, out_dir=out_dir, force=force)
    data = read_file(file)
    labels = stratify_labels(data.records)
    stratified = labels is not None and can_stratify(labels, valid)
    console = Console(highlight=False, soft_wrap=True)
    if data.note:
        console.print(f"[cyan]{escape(data.note)}[/cyan]")
    for path in (train_path, valid_path):
        rows = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        console.print(f"wrote {escape(str(path))} ({rows} rows)")
    how = f"stratified on {len(set(labels or []))} classes" if stratified else "random (not stratified)"
    console.print(f"split: {how}, seed {seed}")

"""``chatbot test FILE``: run conversation tests against the bot and report routing and answers (see ``conversation_tests.py``)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from chatbot.cli.common import EXIT_ERROR, REGISTRY_HELP, console, err_console, handle_errors, need_file, print_json, progress_bars

if TYPE_CHECKING:
    from chatbot.conversation_tests import Report, TurnResult

EXAMPLE = """\
conversations:
  - user: are you open on sundays?          # one message
    skill: shop-faq                         # or fallback, or ask (the bot asks which skill)
    answer_contains: closed                 # also: answer (whole), answer_matches (a regex)
  - user: the brakes squeak again, awful
    skill: review-sentiment
    label: negative
  - conversation: a booking without its day # turns that share a session
    turns:
      - user: book my trek in for a brake tune
        skill: booking-extract
        entities: {bike: trek, service: brake tune}
        asks_for: day                       # the skill asks for a missing slot
      - user: saturday
        skill: booking-extract
        slots: {day: saturday}              # the session's slots after the turn"""


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _confusion(report: Report) -> Table:
    routing = report.routing
    table = Table(title=f"routing: {routing.correct} of {routing.checked} right ({_percent(routing.accuracy)})",
                  caption="rows: expected · columns: what came" + (f"; asked instead of answering: {routing.asked}" if routing.asked else ""))
    table.add_column("expected \\ got")
    for label in routing.labels:
        table.add_column(label, justify="right")
    for expected in routing.labels:
        row = routing.confusion.get(expected)
        if row is None:
            continue
        cells = []
        for got in routing.labels:
            count = row.get(got, 0)
            cells.append("" if not count else f"[green]{count}[/]" if got == expected else f"[red]{count}[/]")
        table.add_row(escape(expected), *cells)
    return table


def _answers(report: Report) -> Table:
    answers = report.answers
    table = Table(title=f"answers: {answers.passed} of {answers.checked} passed ({_percent(answers.pass_rate)})")
    for column in ("skill", "checked", "passed", "pass rate"):
        table.add_column(column, justify="left" if column == "skill" else "right")
    for skill, rate in answers.per_skill.items():
        table.add_row(escape(skill), str(rate.checked), str(rate.passed), _percent(rate.rate))
    return table


def _failures(report: Report) -> None:
    console.print(f"[bold red]{report.failed} failed[/]", highlight=False)
    for result in report.failures:
        named = result.turn > 0 or result.conversation != result.user  # a conversation of one message is named by it
        console.print(f"\n[bold]{escape(result.file)}:{result.line}[/]"
                      + (f"  {escape(result.conversation)}, turn {result.turn + 1}" if named else ""), highlight=False)
        console.print(f"  you: {escape(result.user)}", highlight=False)
        for problem in result.problems:
            console.print(f"  [red]✗[/] {escape(problem)}", highlight=False)
        bot = result.got.outcome if result.got.outcome == result.got.skill else f"{result.got.outcome}, {result.got.skill}" if result.got.skill else result.got.outcome
        text = " / ".join(part.strip() for part in result.got.text.splitlines() if part.strip())
        console.print(f"  bot \\[{escape(bot)}]: {escape(text)}", highlight=False)


@handle_errors
def test(
    file: Annotated[Path, typer.Argument(help="the test file: YAML, or JSON Lines (.jsonl)")],
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON: the figures, every turn, and the failures")] = False,
) -> None:
    from chatbot import registry as registry_io
    from chatbot.conversation_tests import check_against, load_tests, run_tests, throwaway_bot

    need_file(file)
    tests = load_tests(file)
    check_against(tests, registry_io.load(registry))  # a mistake in the file is found before the models load
    with ExitStack() as stack:
        with err_console.status("loading the router and the skills…"), progress_bars(min_total=1) as on_progress:
            bot = stack.enter_context(throwaway_bot(registry, on_progress=on_progress))
            bot.warm_up()
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[failed]}"), console=err_console, transient=True) as progress:
            task = progress.add_task("testing", total=tests.turns, failed="")
            failed = 0

            def on_turn(result: TurnResult) -> None:
                nonlocal failed
                failed += not result.passed
                progress.update(task, advance=1, failed=f"[red]{failed} failed[/]" if failed else "")

            report = run_tests(tests, bot, on_turn=on_turn)
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        console.print(_confusion(report))
        console.print(_answers(report))
        if report.failed:
            _failures(report)
        console.print(f"\n{report.passed} of {report.turns} turns passed in {report.conversations} conversations "
                      f"({report.seconds:.1f} s): routing {_percent(report.routing.accuracy)}, answers {_percent(report.answers.pass_rate)}",
                      highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


test.__doc__ = f"""Test the bot with conversations: the skill each message goes to, its label, entities, slots and answer.

Each conversation runs in a session of its own in a temporary database (your stored conversations are never touched),
with the bot's real router and models. Reports routing accuracy with a confusion matrix over the skills, the answers'
pass rate per skill, and each failure with its file:line, what was expected and what came. Exit status 0 when every
turn passes, 1 when one fails or the file has an error (its line and field are named).

A test file (YAML; in JSON Lines, one turn or one conversation a line):

{EXAMPLE}

Example: chatbot test training_data/conversations.yaml --json
"""

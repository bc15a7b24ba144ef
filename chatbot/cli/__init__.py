"""The ``chatbot`` command: one verb per workflow.

Exit codes: 0 success, 1 a runtime error or a failed check, 2 a usage error (see ``cli/common.py``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from chatbot import __version__
from chatbot.cli import ask, chat, data, evaluation, export, jobs, registry, route, serve, sessions, test, train
from chatbot.cli.common import configure_output, quiet_libraries
from chatbot.defaults import LOG_ENV

app = typer.Typer(
    name="chatbot",
    help="Assistants made of several fine-tuned completion models.\n\nExample: chatbot train shop-faq --kind qa --data training_data/shop_faq_train.jsonl\n\n"
         "Exit status: 0 success, 1 an error or a failed check, 2 a usage error.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(registry.app, name="registry")
app.add_typer(route.app, name="route")
app.command("train")(train.train)
app.command("eval")(evaluation.evaluate)
app.command("ask")(ask.ask)
app.command("chat")(chat.chat)
app.command("test")(test.test)
app.add_typer(sessions.app, name="sessions")
app.command("serve")(serve.serve)
app.add_typer(jobs.app, name="jobs")
app.add_typer(export.app, name="export")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chatbot {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only results and errors: no progress, notes or logs below ERROR")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help=f"logs on stderr: -v at INFO, -vv at DEBUG (default: ${LOG_ENV}, else WARNING)")] = 0,
) -> None:
    """Options that go before the command: chatbot -q data check FILE."""
    if quiet and verbose:
        raise typer.BadParameter("give -q or -v, not both", param_hint="-q / -v")
    configure_output(quiet=quiet, verbose=verbose)


def main() -> None:
    quiet_libraries()
    app()

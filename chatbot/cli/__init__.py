"""The ``chatbot`` command: one verb per workflow."""

from __future__ import annotations

import typer

from chatbot.cli import ask, chat, data, evaluation, jobs, registry, route, serve, sessions, train
from chatbot.cli.common import quiet_libraries

app = typer.Typer(
    name="chatbot",
    help="Assistants made of several fine-tuned completion models.\n\nExample: chatbot train shop-faq --kind qa --data training_data/shop_faq_train.jsonl",
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
app.add_typer(sessions.app, name="sessions")
app.command("serve")(serve.serve)
app.add_typer(jobs.app, name="jobs")


def main() -> None:
    quiet_libraries()
    app()

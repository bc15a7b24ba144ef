"""The ``chatbot`` command: one verb per workflow."""

from __future__ import annotations

import typer

from chatbot.cli import ask, data, evaluate, registry, train
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
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("ask")(ask.ask)


def main() -> None:
    quiet_libraries()
    app()

"""``chatbot sessions list|show|delete``: the stored conversations."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from chatbot.cli.common import DB_HELP, REGISTRY_HELP, console, handle_errors, print_json
from chatbot.errors import ChatbotError

app = typer.Typer(help="List, show and delete stored conversations.\n\nExample: chatbot sessions list", no_args_is_help=True)
RegistryOption = Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)]
DbOption = Annotated[str | None, typer.Option("--db", help=DB_HELP)]


def _store(registry: str | None, db: str | None):  # noqa: ANN202 - ConversationStore
    from chatbot import registry as registry_io
    from chatbot.defaults import DATA_DIR
    from chatbot.conversation import ConversationStore

    reg = registry_io.load(registry, missing_ok=True)
    return ConversationStore.open(db, reg.path.parent / DATA_DIR)


@app.command("list")
@handle_errors
def list_sessions(registry: RegistryOption = None, db: DbOption = None,
                  as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False) -> None:
    """List the sessions, the most recent first.

    --json prints a list of objects: id, turns, created_at and updated_at (ISO 8601).

    Example: chatbot sessions list --db postgresql+psycopg://bot@localhost/bot
    """
    sessions = _store(registry, db).sessions()
    if as_json:
        print_json([{"id": s.id, "turns": s.turns, "created_at": s.created_at.isoformat(), "updated_at": s.updated_at.isoformat()}
                    for s in sessions])
        return
    table = Table("session", "turns", "started", "last turn")
    for info in sessions:
        table.add_row(info.id, str(info.turns), f"{info.created_at:%Y-%m-%d %H:%M}", f"{info.updated_at:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("show")
@handle_errors
def show(session: str, as_json: Annotated[bool, typer.Option("--json", help="print the session as JSON")] = False,
         registry: RegistryOption = None, db: DbOption = None) -> None:
    """Show one session's turns and the entities gathered in it.

    Example: chatbot sessions show alice --json
    """
    record = _store(registry, db).get(session)
    if record is None:
        raise ChatbotError(f"no session {session!r}", hint="see `chatbot sessions list`")
    if as_json:
        console.out(json.dumps(record.model_dump(mode="json"), ensure_ascii=False))
        return
    table = Table("#", "you", "bot", "skill", "score", title=f"session {session}")
    for turn in record.history:
        table.add_row(str(turn.index + 1), turn.user, turn.reply, turn.skill or "fallback", f"{turn.score:.2f}")
    console.print(table)
    for kind, values in record.entities.items():
        console.print(f"[bold]{kind}:[/] {', '.join(values)}", highlight=False)


@app.command("delete")
@handle_errors
def delete(session: str, registry: RegistryOption = None, db: DbOption = None) -> None:
    """Delete one session and its turns.

    Example: chatbot sessions delete alice
    """
    store = _store(registry, db)
    with store.locked(session):
        if not store.delete(session):
            raise ChatbotError(f"no session {session!r}", hint="see `chatbot sessions list`")
    console.print(f"deleted session {session}")

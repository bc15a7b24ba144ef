"""``chatbot serve``: the bot as a web service (OpenAI-compatible API, REST API, chat page)."""

from __future__ import annotations

from typing import Annotated

import typer

from chatbot.cli.common import DB_HELP, REGISTRY_HELP, err_console, handle_errors


@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port to listen on")] = 8000,
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP)] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level: warning, info, debug")] = "warning",
) -> None:
    """Serve the bot over HTTP: /v1 (OpenAI-compatible), /sessions (REST), / (chat page), /docs.

    The skills' models load in the background after start-up: /healthz answers at once, /readyz once
    they are loaded.

    Example: chatbot serve --port 8000 --db postgresql+psycopg://bot@localhost/bot
    """
    import uvicorn

    from chatbot.bot import Bot
    from chatbot.web import create_app

    with err_console.status("loading the router…"):
        bot = Bot.from_registry(registry, db=db, allow_empty=True)
    err_console.print(f"serving {len(bot.registry.skills)} skills on http://{host}:{port}  (chat page /, API docs /docs, OpenAI base URL /v1)",
                      highlight=False)
    uvicorn.run(create_app(bot), host=host, port=port, log_level=log_level)

"""``chatbot serve``: the bot as a web service (OpenAI-compatible API, REST API, chat page)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from chatbot.cli.common import DB_HELP, REGISTRY_HELP, UsageError, err_console, handle_errors

KEY_ENV = "CHATBOT_API_KEY"


@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="address to listen on (anything but loopback needs --api-key)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port to listen on")] = 8000,
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP)] = None,
    api_key: Annotated[list[str] | None, typer.Option("--api-key", help=f"a key clients send as `Authorization: Bearer KEY` (repeat for several; also ${KEY_ENV}, comma-separated)")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option("--allowed-host", help="a Host name to answer besides the loopback names (repeat; `*` for any)")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option("--cors-origin", help="an origin browsers may call the API from (repeat; default: none, CORS off)")] = None,
    fine_tuning: Annotated[bool, typer.Option("--fine-tuning/--no-fine-tuning", help="serve /v1/files and /v1/fine_tuning/jobs")] = True,
    route_new_models: Annotated[bool, typer.Option("--route-new-models", help="a fine-tuning job's model joins the router at once (default: only asked by name)")] = False,
    job_threads: Annotated[int | None, typer.Option("--job-threads", min=1, envvar="CHATBOT_JOB_THREADS", help="torch threads of a "
                                                    "fine-tuning job, which trains in a process of its own at a lower priority "
                                                    "(default: every core but one)")] = None,
    base_model: Annotated[list[str] | None, typer.Option("--base-model", help="a base model jobs may fine-tune besides the bundled one: a local folder or hub id (repeat)")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level: warning, info, debug")] = "warning",
    access_log: Annotated[bool, typer.Option("--access-log", help="a line per request on stdout (uvicorn's access log)")] = False,
) -> None:
    """Serve the bot over HTTP: /v1 (OpenAI-compatible), /sessions (REST), / (chat page), /docs.

    The skills' models load in the background after start-up: /healthz answers at once, /readyz once
    they are loaded; /metrics has Prometheus metrics. With API keys, every other route needs `Authorization: Bearer KEY`. Only the
    loopback names are answered unless --allowed-host names more; on an address other than loopback
    the server does not start without a key.

    Example: CHATBOT_API_KEY=s3cret chatbot serve --host 0.0.0.0 --allowed-host bot.example.com --db postgresql+psycopg://bot@localhost/bot
    """
    import uvicorn

    from chatbot.bot import Bot
    from chatbot.web import create_app
    from chatbot.web.access import LOOPBACK_HOSTS, Access

    keys = [k for k in (api_key or []) if k] + [k.strip() for k in os.environ.get(KEY_ENV, "").split(",") if k.strip()]
    if host not in LOOPBACK_HOSTS and not keys:
        raise UsageError(f"--host {host}: anyone who reaches this address could use the bot, read its conversations and train models",
                           hint=f"give clients a key with --api-key or ${KEY_ENV}, or listen on 127.0.0.1")
    hosts = LOOPBACK_HOSTS + [h for h in (allowed_host or []) if h]
    if host not in ("0.0.0.0", "::") and host not in hosts:
        hosts.append(host)  # clients calling the address it listens on
    if host in ("0.0.0.0", "::") and not allowed_host:
        err_console.print("[yellow]note:[/] only loopback Host names are answered: name the ones clients use with --allowed-host", highlight=False)
    access = Access(api_keys=keys, allowed_hosts=hosts, cors_origins=[o for o in (cors_origin or []) if o])
    with err_console.status("loading the router…"):
        bot = Bot.from_registry(registry, db=db, allow_empty=True)
    guarded = f"{len(keys)} API key{'s' if len(keys) != 1 else ''}" if keys else "no API key (loopback only)"
    err_console.print(f"serving {len(bot.registry.skills)} skills on http://{host}:{port}  (chat page /, API docs /docs, OpenAI base URL /v1); "
                      f"{guarded}; answering Host {', '.join(hosts)}", highlight=False)
    app = create_app(bot, fine_tuning=fine_tuning, access=access, route_new_models=route_new_models, base_models=base_model or [],
                     job_threads=job_threads)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log)
    if access_log:  # shown whatever --log-level says: asked for (the config has just set the level)
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    uvicorn.Server(config).run()

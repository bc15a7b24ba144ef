"""``chatbot export vllm``: serve the bot's local skills on vLLM, adapters unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chatbot.cli.common import REGISTRY_HELP, UsageError, console, err_console, handle_errors

app = typer.Typer(help="Run the same skills on other engines.\n\nExample: chatbot export vllm --out models.vllm.yaml", no_args_is_help=True)


@app.command("vllm")
@handle_errors
def vllm(
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port of the first vLLM server (one server per base model)")] = 8000,
    out: Annotated[Path | None, typer.Option("--out", help="write the bot's registry for vLLM here, beside models.yaml "
                                             "(default: print it, the commands as comments on top)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace --out if it exists")] = False,
) -> None:
    """Print the `vllm serve` command(s) that load each base once with the skills' LoRA adapters, and
    the models.yaml that sends each local skill to its vLLM server (backend: openai).

    Run vLLM where there is a GPU (the adapters' folders must be readable there), set VLLM_API_KEY
    on both sides, then run one or more `chatbot serve --registry models.vllm.yaml --db
    postgresql+psycopg://…` replicas behind a load balancer: they share conversations and jobs.

    Example: chatbot export vllm --out models.vllm.yaml
    """
    from chatbot import registry as registry_io
    from chatbot.export import API_KEY_ENV, vllm_plan

    source = registry_io.load(registry)
    if out is not None:
        if out.resolve().parent != source.path.resolve().parent:
            raise UsageError(f"--out {out}: write it beside {source.path}", hint="its paths (data files, adapters) are relative to that folder")
        if out.resolve() == source.path.resolve():
            raise UsageError(f"--out {out}: that is the registry being exported", hint="name another file, e.g. models.vllm.yaml")
        if out.exists() and not force:
            raise UsageError(f"--out {out}: the file exists", hint="pass --force to replace it")
    plan = vllm_plan(source, first_port=port)
    commands = [server.command() for server in plan.servers]
    if out is None:
        typer.echo("".join(f"# {command}\n" for command in commands) + registry_io.to_yaml(plan.registry), nl=False)
        return
    registry_io.save(plan.registry, out)
    for command in commands:
        console.print(command, highlight=False, soft_wrap=True)
    err_console.print(f"wrote {out}: {sum(len(s.adapters) for s in plan.servers)} adapters on {len(plan.servers)} vLLM server(s); "
                      f"set {API_KEY_ENV} for both, then: chatbot serve --registry {out.name}", highlight=False)

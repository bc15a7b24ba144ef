"""``chatbot jobs``: fine-tuning jobs on a server that speaks OpenAI's API (OpenAI, or `chatbot serve`)."""

from __future__ import annotations

from datetime import datetime, timezone
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from chatbot.cli.common import REGISTRY_HELP, console, err_console, handle_errors, print_json

app = typer.Typer(help="Follow, list and cancel hosted fine-tuning jobs.\n\nExample: chatbot jobs list --base-url http://127.0.0.1:8000/v1",
                  no_args_is_help=True)
BaseUrl = Annotated[str | None, typer.Option("--base-url", envvar="OPENAI_BASE_URL", help="the server's /v1 URL (default: OpenAI's)")]
KeyEnv = Annotated[str, typer.Option("--api-key-env", help="environment variable holding the API key")]
T = TypeVar("T")
RegistryOption = Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _client(base_url: str | None, api_key_env: str) -> Any:
    from chatbot.runtime.openai_client import make_client

    return make_client(base_url, api_key_env)


def _jobs(base_url: str | None, api_key_env: str, call: Callable[[Any], T]) -> T:
    """``call(client.fine_tuning.jobs)``, with the SDK's errors turned into one line naming the server."""
    from chatbot.runtime.openai_client import api_errors

    client = _client(base_url, api_key_env)
    with api_errors(base_url):
        return call(client.fine_tuning.jobs)


def _when(stamp: int | None) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def follow_and_register(client: Any, job_id: str, *, base_url: str | None, api_key_env: str, registry: str | None) -> None:
    """Show the job's events with a progress bar until it ends; register the model when it succeeds."""
    from chatbot.training.hosted import follow, register

    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err_console)
    try:
        with progress:
            task = progress.add_task(f"job {job_id}", total=None)

            def on_event(event: Any) -> None:
                data = event.data or {}
                if isinstance(data, dict) and data.get("total_steps"):
                    progress.update(task, completed=data["step"], total=data["total_steps"], description=f"job {job_id} · training")
                if event.type != "metrics" or "Epoch" in event.message:
                    style = "red" if event.level == "error" else "dim"
                    progress.console.print(f"[{style}]{_when(event.created_at)}[/] {escape(event.message)}", highlight=False)

            job = follow(client, job_id, on_event)
    except KeyboardInterrupt:
        err_console.print(f"detached: the job goes on. Re-attach with `chatbot jobs follow {job_id}`")
        raise typer.Exit(130) from None
    skill = register(job, base_url=base_url, api_key_env=api_key_env, registry_path=registry)
    console.print(f"[green]succeeded[/]: {job.fine_tuned_model}, registered as skill {skill.name} ({skill.kind}, backend openai)")
    console.print(f"try: chatbot ask {skill.name} \"...\"  ·  chatbot chat")


@app.command("follow")
@handle_errors
def follow_job(job_id: str, base_url: BaseUrl = None, api_key_env: KeyEnv = "OPENAI_API_KEY", registry: RegistryOption = None) -> None:
    """Follow a job until it ends (Ctrl-C detaches) and register its model as a skill when it succeeds.

    Example: chatbot jobs follow ftjob-abc123 --base-url http://127.0.0.1:8000/v1
    """
    follow_and_register(_client(base_url, api_key_env), job_id, base_url=base_url, api_key_env=api_key_env, registry=registry)


@app.command("list")
@handle_errors
def list_jobs(base_url: BaseUrl = None, api_key_env: KeyEnv = "OPENAI_API_KEY", limit: int = 20, as_json: JsonOption = False) -> None:
    """List the most recent jobs, the newest first.

    --json prints a list of the server's fine_tuning.job objects, as its API returns them.

    Example: chatbot jobs list --base-url http://127.0.0.1:8000/v1
    """
    found = _jobs(base_url, api_key_env, lambda jobs: jobs.list(limit=limit).data)
    if as_json:
        print_json([job.model_dump(mode="json") for job in found])
        return
    table = Table("job", "status", "base model", "fine-tuned model", "created", "finished")
    for job in found:
        table.add_row(job.id, job.status, job.model, job.fine_tuned_model or "-", _when(job.created_at), _when(job.finished_at))
    console.print(table)


@app.command("show")
@handle_errors
def show(job_id: str, base_url: BaseUrl = None, api_key_env: KeyEnv = "OPENAI_API_KEY") -> None:
    """Show one job as JSON.

    Example: chatbot jobs show ftjob-abc123
    """
    job = _jobs(base_url, api_key_env, lambda jobs: jobs.retrieve(job_id))
    print_json(job.model_dump(mode="json"))


@app.command("events")
@handle_errors
def events(job_id: str, base_url: BaseUrl = None, api_key_env: KeyEnv = "OPENAI_API_KEY", limit: int = 100, as_json: JsonOption = False) -> None:
    """Print a job's events, oldest first.

    --json prints a list of the server's fine_tuning.job.event objects, oldest first.

    Example: chatbot jobs events ftjob-abc123 --limit 20
    """
    found = list(reversed(_jobs(base_url, api_key_env, lambda jobs: jobs.list_events(job_id, limit=limit).data)))
    if as_json:
        print_json([event.model_dump(mode="json") for event in found])
        return
    for event in found:
        console.print(f"[dim]{_when(event.created_at)}[/] {escape(event.message)}", highlight=False)


@app.command("cancel")
@handle_errors
def cancel(job_id: str, base_url: BaseUrl = None, api_key_env: KeyEnv = "OPENAI_API_KEY") -> None:
    """Cancel a job that has not ended.

    Example: chatbot jobs cancel ftjob-abc123
    """
    job = _jobs(base_url, api_key_env, lambda jobs: jobs.cancel(job_id))
    console.print(f"{job.id}: {job.status}")

"""``chatbot train``: check the data, fine-tune a LoRA adapter locally, register the skill."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from chatbot.cli.common import REGISTRY_HELP, UsageError, console, err_console, handle_errors, need_file
from chatbot.skills import KINDS
from chatbot.runtime.base_models import DEFAULT_BASE
from chatbot.training.hyperparams import Hyperparameters

_OPTION = {"n_epochs": "--epochs", "batch_size": "--batch-size", "learning_rate_multiplier": "--learning-rate-multiplier",
           "prompt_loss_weight": "--prompt-loss-weight", "seed": "--seed", "select": "--select",
           "early_stopping_patience": "--early-stopping-patience", "precision": "--precision"}


def hyperparameters(**values: object) -> Hyperparameters:
    """Validated hyperparameters; a bad one is named by its command-line option."""
    try:
        return Hyperparameters(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0])
        raise UsageError(f"{_OPTION.get(field, field)}: {err['msg']}", hint=f"got {err.get('input')!r}") from None


@handle_errors
def train(
    name: Annotated[str, typer.Argument(help="name of the skill to create")],
    kind: Annotated[str, typer.Option("--kind", help=f"one of {', '.join(KINDS)}")],
    data: Annotated[Path, typer.Option("--data", help="training file (JSONL prompt/completion)")],
    valid: Annotated[Path | None, typer.Option("--valid", help="validation file: its loss is recorded per epoch")] = None,
    base: Annotated[str, typer.Option("--base", help="base model: bundled alias, local folder or Hugging Face id")] = DEFAULT_BASE,
    epochs: Annotated[int | None, typer.Option("--epochs", help="passes over the data (default: from data size)")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="examples per step (default: from data size)")] = None,
    learning_rate_multiplier: Annotated[float | None, typer.Option("--learning-rate-multiplier", help="scales the reference learning rate")] = None,
    prompt_loss_weight: Annotated[float | None, typer.Option("--prompt-loss-weight", help="loss weight of prompt tokens (default 0.01)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="random seed")] = None,
    select: Annotated[str | None, typer.Option("--select", help="with --valid, the epoch registered: last (default), best-loss, "
                                               "best-metric (the skill's metric on --valid)")] = None,
    early_stopping_patience: Annotated[int | None, typer.Option("--early-stopping-patience", help="with --select best-loss or best-metric, stop "
                                                                "after N epochs without improvement (default 3; 0: never)")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="auto (default: bf16 autocast on a GPU that computes it, "
                                                  "else fp32), fp32 or bf16")] = None,
    keep_last: Annotated[int, typer.Option("--keep-last", min=1, help="with --valid, keep checkpoints of the last N epochs "
                                           "besides the best (default 1)")] = 1,
    description: Annotated[str, typer.Option("--description", help="what the skill does, for people and the router")] = "",
    force: Annotated[bool, typer.Option("--force", help="retrain and replace a skill of the same name")] = False,
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
    hosted: Annotated[bool, typer.Option("--hosted", help="fine-tune on a server speaking OpenAI's API (OpenAI, or `chatbot serve`)")] = False,
    base_url: Annotated[str | None, typer.Option("--base-url", envvar="OPENAI_BASE_URL", help="--hosted: the server's /v1 URL (default: OpenAI's)")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="--hosted: environment variable holding the API key")] = "OPENAI_API_KEY",
    suffix: Annotated[str | None, typer.Option("--suffix", help="--hosted: added to the fine-tuned model's name")] = None,
) -> None:
    """Fine-tune a skill locally (LoRA, CPU or GPU), or on a hosted server, and register it in models.yaml.

    Runs `chatbot data check` first and stops on errors. Defaults for epochs, batch size and
    learning-rate multiplier are chosen from the data size, as OpenAI's fine-tuning API does.
    With --hosted the data is uploaded, the job created and followed (Ctrl-C detaches; `chatbot jobs
    follow ID` re-attaches), and the model registered with backend: openai when it succeeds.

    Example: chatbot train booking-extract --kind extract --data training_data/booking_extract_train.jsonl --epochs 8
    """
    from chatbot.training.skill import train_skill

    if kind not in KINDS:
        raise UsageError(f"--kind: unknown skill kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    need_file(data, "--data")
    need_file(valid, "--valid")
    hp = hyperparameters(n_epochs=epochs, batch_size=batch_size, learning_rate_multiplier=learning_rate_multiplier,
                         prompt_loss_weight=prompt_loss_weight, seed=seed, select=select, early_stopping_patience=early_stopping_patience, precision=precision)
    if hosted and (select is not None or early_stopping_patience is not None or keep_last != 1 or precision is not None):
        raise UsageError("--select, --early-stopping-patience, --keep-last and --precision are for local training", hint="drop them with --hosted")
    if hosted:
        from chatbot.cli.jobs import follow_and_register
        from chatbot.runtime.openai_client import make_client
        from chatbot.training.hosted import start_job

        explicit = {k for k, v in {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": learning_rate_multiplier,
                                   "prompt_loss_weight": prompt_loss_weight, "seed": seed}.items() if v is not None}
        client = make_client(base_url, api_key_env)
        job = start_job(client, name=name, kind=kind, data=data, valid=valid, base=base, hyperparameters=hp, explicit=explicit,
                        suffix=suffix, description=description, registry_path=registry, force=force)
        err_console.print(f"created job {job.id} on {client.base_url} (base {base})")
        follow_and_register(client, job.id, base_url=base_url, api_key_env=api_key_env, registry=registry)
        return
    progress = Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=err_console,
    )
    with progress:
        task = progress.add_task(f"checking data, loading {base}", total=None, loss="-")

        def on_step(epoch: int, step: int, total: int, loss: float) -> None:
            progress.update(task, description=f"training {name} · epoch {epoch}", completed=step, total=total, loss=f"{loss:.4f}")

        def on_epoch(epoch: int, train_loss: float, valid_loss: float | None) -> None:
            shown = f", valid loss {valid_loss:.4f}" if valid_loss is not None else ""
            progress.console.print(f"epoch {epoch}: train loss {train_loss:.4f}{shown}")

        skill = train_skill(name, kind, data, valid=valid, base=base, hyperparameters=hp, registry_path=registry,
                            description=description, force=force, on_step=on_step, on_epoch=on_epoch, keep_last=keep_last)
    record = skill.training
    assert record is not None
    hp_shown = ", ".join(f"{k}={record.hyperparameters[k]}" for k in ("n_epochs", "batch_size", "learning_rate_multiplier", "prompt_loss_weight"))
    console.print(f"[green]trained[/] {name} ({kind}) in {record.duration_s:.0f}s with {hp_shown}")
    if record.best_epoch is not None:
        stopped = f", stopped early after epoch {record.epochs[-1].epoch}" if record.stopped_early else ""
        kept = ", ".join(str(e.epoch) for e in record.epochs if e.checkpoint)
        console.print(f"registered epoch {record.selected_epoch} ({record.hyperparameters['select']}; best {record.best_epoch}{stopped}); "
                      f"checkpoints of epochs {kept} in {skill.adapter}/checkpoints")
    console.print(f"adapter: {skill.adapter}; try: chatbot ask {name} \"...\"  ·  chatbot eval {name} --data FILE")

"""What every command shares: the consoles, error handling, quiet logs, escape decoding."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from chatbot.errors import ChatbotError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

REGISTRY_HELP = "models.yaml to use (default: $CHATBOT_REGISTRY, else ./models.yaml)"
DB_HELP = "database URL for conversations, e.g. postgresql+psycopg://user@host/db (default: $CHATBOT_DB, else .chatbot/chatbot.db beside the registry)"


def quiet_libraries() -> None:
    """Logs are structured and quiet by default; CHATBOT_LOG=INFO (or DEBUG) shows ours."""
    level = os.environ.get("CHATBOT_LOG", "WARNING").upper()
    logging.basicConfig(level=level, format='{"level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


PROGRESS_MIN = 256  # steps of fewer items (texts to embed, training steps) pass too fast for a bar


@contextmanager
def progress_bars(min_total: int = PROGRESS_MIN) -> Iterator[Callable[[str, int, int], None]]:
    """A ``(what, done, total)`` callback for library code, drawn as transient rich bars on stderr."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True)
    tasks: dict[str, TaskID] = {}

    def report(what: str, done: int, total: int) -> None:
        if total < min_total:
            return
        if what not in tasks:
            progress.start()
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done, total=total)
        if done >= total:
            progress.remove_task(tasks.pop(what))

    try:
        yield report
    finally:
        progress.stop()


def handle_errors(func: F) -> F:
    """Turn a ChatbotError into one red line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ChatbotError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def decode_escapes(text: str, option: str) -> str:
    r"""*text* with ``\n``, ``\t`` and the like decoded (non-ASCII characters kept as they are)."""
    try:
        decoded = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as exc:
        raise ChatbotError(f"{option} {text!r}: bad escape sequence ({exc.reason})") from None
    if not decoded:
        raise ChatbotError(f"{option} cannot be empty")
    return decoded
